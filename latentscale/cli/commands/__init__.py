"""One module per command of ``latentscale`` (each a plain function, registered in :mod:`latentscale.cli.app`)."""
