"""Deployment: `make up` / `make down`, Ray services, presets in deploy/configs/."""
