"""The ``directgw`` command line: thin edges that drive the core and the stores."""
