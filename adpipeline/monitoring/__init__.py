"""Monitoring: the thresholds table, check builders, sensors, watchdog and doctor."""
