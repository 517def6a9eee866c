"""ROS 2 glue: message conversions and the encoder/decoder nodes. The only package importing rclpy."""
