"""Camera/LiDAR geometry: calibration and the projection that builds the conditioning input."""
