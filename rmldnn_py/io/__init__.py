"""Output files: HDF5 predictions (SPEC §7.5) and atomic file writing."""
