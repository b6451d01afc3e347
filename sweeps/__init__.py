"""Driver side of a sweep: the runner (Ray, Tuner, storage, resume), the Parquet log callback and the sweep
scripts (`python sweeps/stn_mnist.py --help`)."""
