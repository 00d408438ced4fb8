"""edrfleet: block high-risk command executions in the kernel, across a fleet."""

__version__ = "0.1.0"
