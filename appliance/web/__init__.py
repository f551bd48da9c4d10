"""The web layer: the Litestar app, its controllers, templates and vendored static assets."""

from appliance.web.app import create_app

__all__ = ["create_app"]
