"""The `shiftroute` command, shaped after `oc`."""
