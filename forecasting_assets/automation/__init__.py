"""Jobs, the nightly schedule and the sensors (landing folder, drift)."""
