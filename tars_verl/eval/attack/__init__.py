"""Attacks generated against the model under test (HarmBench's GCG, PAIR, AutoDAN and PAP): ``python -m
tars_verl.eval.attack``. :mod:`tars_verl.eval.attack.base` is the contract every method implements."""
