"""A fake of the Interbotix ROS 1 Python API (``interbotix_xs_modules``) for tests.

It mirrors the public surface robofume uses -- ``InterbotixManipulatorXS(robot_model,
group_name, gripper_name)`` with ``.arm``, ``.gripper`` and ``.dxl`` -- with the same method
names, arguments and return shapes as the real package, but a kinematic arm that reaches any
commanded pose inside a sphere and motors whose error registers tests can set.
"""
