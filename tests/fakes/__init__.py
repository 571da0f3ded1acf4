"""Stand-ins for hardware only: the Interbotix WidowX driver and an OpenCV USB camera."""
