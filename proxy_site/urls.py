import re

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from calls.api_schema import DocsView, SchemaView

from calls import demo, views

call_web = views.CallWebView.as_view()
call_phone = views.PhoneCallView.as_view()

urlpatterns = [
    path("", views.root, name="root"),
    path("healthz", views.HealthView.as_view(), name="healthz"),
    # The API contract (OpenAPI 3), generated from the views; and Swagger UI, served from /static/.
    re_path(r"^api/schema/?$", SchemaView.as_view(), name="api-schema"),
    re_path(r"^api/docs/?$", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    # The SDK concatenates its base URL and "/call/web": a base ending in "/" gives "//call/web".
    re_path(r"^(?:/)?call/web/?$", call_web, name="call-web"),
    re_path(r"^(?:/)?call/?$", call_phone, name="call-phone"),
    re_path(r"^webhooks/vapi/?$", views.VapiWebhookView.as_view(), name="vapi-webhook"),
    # Local development only: each answers 404 unless DJANGO_DEBUG is on.
    re_path(r"^demo/?$", demo.page, name="demo"),
    path("demo/vapi.js", demo.bundle, name="demo-bundle"),
    path("demo/token", demo.token, name="demo-token"),
]
if settings.PROXY_PATH_PREFIX:
    prefix = re.escape(settings.PROXY_PATH_PREFIX)
    urlpatterns += [
        re_path(rf"^{prefix}/+call/web/?$", call_web, name="call-web-prefixed"),
        re_path(rf"^{prefix}/+call/?$", call_phone, name="call-phone-prefixed"),
        re_path(rf"^{prefix}/+webhooks/vapi/?$", views.VapiWebhookView.as_view(), name="vapi-webhook-prefixed"),
    ]
# Unknown routes answer the JSON error shape, also under DEBUG (Django's 404 page is HTML).
urlpatterns.append(re_path(r"^(?!admin(/|$)|static/).*$", views.not_found))
