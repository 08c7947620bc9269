"""A package of your own scorers, importable through PYTHONPATH (tars_verl/config/README.md, "Adding a scorer")."""
