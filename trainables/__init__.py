"""Code that runs inside a Ray Tune trial: configs, MNIST tensors, models, the shared epoch loop, trainables.

Nothing here starts Ray; `sweeps/` does. The trainables (`trainables.stn.train_stn`, ...) are plain
functions of a config dict, so they can also be called directly in a notebook or a test.
"""
