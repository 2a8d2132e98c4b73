"""The gateway API, one router per concern; create_app (api.py) includes them."""
