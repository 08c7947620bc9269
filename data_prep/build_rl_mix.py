"""Build the TARS RL prompt mix (train.parquet, val.parquet, stats.json). See --help."""

from tars_verl.data.rl_mix import main

if __name__ == "__main__":
    main()
