"""The front ends people use: the `video-pipelines` CLI, the Python client, the HTTP API client, the demo and dev
commands.
"""

# Where the HTTP API is, and the key to it (see api_client.py): here, so a local command reads them without
# importing the API client's httpx.
API_URL_ENV = "VIDEO_PIPELINES_API_URL"
API_KEY_ENV = "VIDEO_PIPELINES_API_KEY"
