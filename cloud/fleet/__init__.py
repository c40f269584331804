"""Fleet management: branches and their devices (inventory, configuration, commands)."""
