"""The manager core: everything the control station does, without Qt."""
