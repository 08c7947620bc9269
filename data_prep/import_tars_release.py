"""Import the TARS authors' released RL data (train_lambda_<x>.parquet, test.parquet) into verl parquet. See --help."""

from tars_verl.data.release import main

if __name__ == "__main__":
    main()
