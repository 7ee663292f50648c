import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")
application = get_asgi_application()

from calls.apps import warn_if_unconfigured  # noqa: E402  (needs the app registry)

warn_if_unconfigured()
