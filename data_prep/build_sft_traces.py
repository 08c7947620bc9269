"""SFT warm-start traces from a reasoning teacher (generate, resumable) or an existing file (convert). See --help."""

from tars_verl.data.sft_traces import main

if __name__ == "__main__":
    main()
