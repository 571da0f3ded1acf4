"""Deployment: `make up` / `make down`, Ray services, presets in deploy/configs/.

Ray links use token authentication (``RAY_AUTH_MODE=token``, token in ``~/.ray/auth_token``).
The mode is set here, before anything imports Ray, because Ray reads it once per process.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # raylet chatter on the console
