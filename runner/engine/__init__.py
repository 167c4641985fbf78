"""The interpreter: claiming due leads and moving each through its sequence, durably."""
