"""Build the evaluation sets (StrongREJECT, XSTest, HarmBench, Sorry-Bench, WildChat) as parquet. See --help."""

from tars_verl.data.eval_sets import main

if __name__ == "__main__":
    main()
