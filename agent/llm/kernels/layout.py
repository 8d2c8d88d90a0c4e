"""The repacked layout's one shared number, below both the repacker and the kernels that read it."""

LANES = 128  # rows per group: one group's codes for a 2048-wide row stay in L2 while it is read
