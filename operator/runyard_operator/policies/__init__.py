"""Pure decision functions of the operator: no I/O, no clock (time is passed in)."""
