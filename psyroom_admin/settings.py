"""PsyRoom Admin settings.

Every knob comes from the environment through the small helpers below, which fail loudly on a bad value. With no
environment at all the project runs embedded: SQLite and a file-system Celery broker under ``var/``, the bundled
model on the CPU, a development secret key. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``SECRET_KEY``
and ``DEBUG=0``.
"""

import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
    return number


def env_mapping(name: str) -> dict[str, str]:
    """``a=X,b=Y`` as ``{"a": "X", "b": "Y"}``; an entry without ``=``, an empty side or a repeated key stops the
    start."""
    mapping: dict[str, str] = {}
    for entry in env_str(name).split(","):
        if not entry.strip():
            continue
        key, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name}: {entry.strip()!r} is not name=VALUE")
        if key in mapping:
            raise ImproperlyConfigured(f"{name}: {key!r} is given twice")
        mapping[key] = value
    return mapping


# Variables that hold the project's own secrets: no model credential may name them, whatever the operator typed.
_NOT_MODEL_CREDENTIALS = frozenset({"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"})


def env_credentials(name: str) -> dict[str, str]:
    """Model credentials: ``vllm=VLLM_API_KEY,openai=OPENAI_API_KEY`` (credential name -> environment variable)."""
    mapping = env_mapping(name)
    for key, variable in mapping.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", key):
            raise ImproperlyConfigured(f"{name}: {key!r} is not a credential name (letters, digits, _ . -)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
            raise ImproperlyConfigured(f"{name}: {variable!r} is not an environment variable name")
        if variable in _NOT_MODEL_CREDENTIALS:
            raise ImproperlyConfigured(f"{name}: {key}={variable} would send {variable} to a model server")
    return mapping


def env_url_prefixes(name: str) -> list[str]:
    """Comma-separated http(s) URL prefixes, each with a host and without a user, a query or a fragment."""
    prefixes = [item.strip() for item in env_str(name).split(",") if item.strip()]
    for prefix in prefixes:
        if not prefix.isascii() or any(not ch.isprintable() or ch.isspace() or ch in "\\@?#" for ch in prefix):
            raise ImproperlyConfigured(f"{name}: {prefix!r} has a space, control character, backslash, @, ? or #")
        try:
            parsed = urlparse(prefix)
            parsed.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {prefix!r} is not a URL") from None
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ImproperlyConfigured(f"{name}: {prefix!r} is not an http:// or https:// URL with a host")
    return prefixes


def database_from_url(url: str) -> dict:
    """Turn ``sqlite:///path`` or ``postgres://user:pass@host:port/name`` into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        # sqlite:///relative/path is relative to the project; sqlite:////abs/path is absolute.
        name = path[1:]
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no SQLite file")
        file = Path(name) if Path(name).is_absolute() else BASE_DIR / name
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(file),
            # A file (not :memory:) so that a Celery worker started by a test sees the test database; one per test
            # process, so that two test runs on one machine never share it.
            "TEST": {"NAME": str(file.with_name(f"test_{os.getpid()}_{file.name}"))},
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    if parsed.scheme in {"postgres", "postgresql"}:
        name = parsed.path.lstrip("/")
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no database")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(name),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        }
    raise ImproperlyConfigured(f"DATABASE_URL={url!r}: the scheme must be sqlite:// or postgres://")


VAR_DIR = Path(env_str("PSYROOM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASE_URL = env_str("DATABASE_URL", "sqlite:///var/db.sqlite3")
DATABASES = {"default": database_from_url(DATABASE_URL)}
# Embedded mode: everything on this machine, no servers. Demo accounts exist only here.
EMBEDDED = DATABASES["default"]["ENGINE"].endswith("sqlite3")

DEBUG = env_bool("DEBUG", EMBEDDED)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "embedded-development-key-never-use-in-production"

ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_results",
    "generation",
    "annotations",
    "accounts",
    # Dataset releases: reads generation and annotations; nothing imports it back.
    "releases",
    # Quality dashboards: read annotations and generation, write nothing.
    "dashboards",
    # The project's own models: the answers kept for the API's idempotency keys (psyroom_admin.idempotency).
    "psyroom_admin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (what `collectstatic` put in STATIC_ROOT), also where DEBUG is off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The cookie's or the browser's language; a signed-in user's profile overrides it (accounts.middleware).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A NUL byte or a lone surrogate in a query string (or a page's form) is a 400 before any view runs.
    "psyroom_admin.edge.QueryStringMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session gave a TOTP code (django-otp).
    "django_otp.middleware.OTPMiddleware",
    # The language of the user's profile, once the user is known (a token's user: accounts.auth).
    "accounts.middleware.ProfileLanguageMiddleware",
    "psyroom_admin.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A signed-in session that still owes a TOTP code (or, by PSYROOM_OTP_REQUIRED_ROLES, an enrolment) reaches
    # nothing else, the Django admin included (accounts.middleware).
    "accounts.middleware.OTPGateMiddleware",
    # Last: it turns a login that axes refused into the lockout answer (accounts.lockout).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "psyroom_admin.urls"
WSGI_APPLICATION = "psyroom_admin.wsgi.application"
ASGI_APPLICATION = "psyroom_admin.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "psyroom_admin.context_processors.user_roles",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("PASSWORD_MIN_LENGTH", 12, minimum=12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The interface in English and Simplified Chinese (docs/languages.md). A user's language is their profile's
# (accounts.Profile, set by the switcher in every page's header), else the language cookie, else the browser's
# Accept-Language, else English.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Plotly's JavaScript comes from the installed wheel (psyroom_admin/staticfiles.py), not from a CDN or a copy in git.
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "psyroom_admin.staticfiles.PlotlyFinder",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Login lockout (django-axes) ---------------------------------------------------------------------------------

# axes first: it refuses a locked-out username and address before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("AXES_ENABLED", True)
# Failures are counted per username and address together, on the login form, the admin's and /api/auth/token/:
# one attacker cannot lock everybody out, and a colleague's typos do not lock you.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
# How many reverse proxies append to X-Forwarded-For in front of the app (0: use the connection's address).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- Two-factor sign-in (django-otp, TOTP) ----------------------------------------------------------------------

# The roles that may enrol an authenticator app (psyroom_admin.roles.OTP_ROLES says the same; a test keeps them
# equal): counselors cannot, so they cannot be required to.
_OTP_ROLES = ("senior_clinician", "curator", "admin")


def env_roles(name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated role names, each one of ``allowed``."""
    names = tuple(dict.fromkeys(item.strip() for item in env_str(name).split(",") if item.strip()))
    for role in names:
        if role not in allowed:
            raise ImproperlyConfigured(f"{name}: {role!r} is not one of {', '.join(allowed)}")
    return names


# Enrolment is optional: a user who enrolled gives a code after the password, on every way in. The roles named
# here (e.g. "senior_clinician,curator,admin") must enrol before any page or token is theirs.
PSYROOM_OTP_REQUIRED_ROLES = env_roles("PSYROOM_OTP_REQUIRED_ROLES", _OTP_ROLES)
# Wrong codes are counted per device, whatever the address, on the code page and /api/auth/token/ together: after
# this many in a row, no code is checked until PSYROOM_OTP_COOLOFF_MINUTES after the last failure.
PSYROOM_OTP_FAILURE_LIMIT = env_int("PSYROOM_OTP_FAILURE_LIMIT", 5, minimum=1)
PSYROOM_OTP_COOLOFF = timedelta(minutes=env_int("PSYROOM_OTP_COOLOFF_MINUTES", 15, minimum=1))
# The lock above replaces django-otp's own exponential delay (a factor of 0 turns it off; the failures are still
# counted on the device).
OTP_TOTP_THROTTLE_FACTOR = 0
# The name an authenticator app shows next to the account.
OTP_TOTP_ISSUER = env_str("PSYROOM_OTP_ISSUER", "PsyRoom Admin")
# The Django admin's TOTP device pages never show a device's secret (accounts/admin.py only lists and deletes).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- HTTPS and headers ------------------------------------------------------------------------------------------

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy, the header it sets to say the request came over HTTPS, e.g.
# HTTP_X_FORWARDED_PROTO. Only where that proxy always sets (or strips) it: a client could send it too.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER")
SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https") if _proxy_ssl_header else None

# No inline script or style, no eval, nothing from another origin (htmx is configured in base.html to need none of
# them; the Swagger UI is served in its CSP-friendly split form).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- REST API ---------------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: an anonymous request is then told 401 with "WWW-Authenticate: Token" (the first class's scheme).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The edge rules on every body (psyroom_admin.edge): no NUL byte or lone surrogate, JSON at most 32 deep, a size
    # limit that DRF's own parsers do not apply.
    # The API reads JSON only: a form's empty field would quietly take a field's default (an empty language is
    # English), which a JSON body never does.
    "DEFAULT_PARSER_CLASSES": ["psyroom_admin.edge.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # ?limit= from 1 to 200, ?offset= from 0 to 2**31-1; out of bounds is a 400.
    "DEFAULT_PAGINATION_CLASS": "psyroom_admin.api_permissions.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Services' refusals (400), stale versions (409) and permissions (403) answered the same way everywhere.
    "EXCEPTION_HANDLER": "psyroom_admin.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PsyRoom Admin API",
    "DESCRIPTION": "Candidates generated for counseling-model training, and the reviews clinicians give them.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from the project itself: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The answers from the edge and from DRF (400, 401, 403, 404, 413, 415), documented on every operation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "psyroom_admin.api_schema.add_common_responses",
    ],
}

# API tokens (django-rest-knox): hashed at rest, each expiring TOKEN_TTL after it was made; a password change revokes
# a user's tokens (accounts.signals).
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_int("API_TOKEN_TTL_HOURS", 10, minimum=1)),
    "AUTH_HEADER_PREFIX": "Token",
}
API_TOKENS_PER_USER = env_int("API_TOKENS_PER_USER", 10, minimum=1)

# --- Celery ----------------------------------------------------------------------------------------------------

# A generation task executes one chunk of a run (a batch of items), then queues the run's next chunk: the limit, and
# the visibility timeout below, bound a chunk, not a whole run.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 2 * 3600, minimum=60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Tests point this elsewhere so that a worker of `make run` never takes a test's task.
    _broker_dir = Path(env_str("PSYROOM_BROKER_DIR", str(VAR_DIR / "broker")))
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    # The file-system transport has no fanout exchange for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    # A task that a killed worker never acknowledged is delivered again after this many seconds; it must outlast
    # the longest task (one chunk). A run whose worker died shows `stalled` much sooner (PSYROOM_RUN_STALE_S) and
    # can be resumed at once; a delivery of a run whose worker is alive is dropped (services.runs.run_claim).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 600, minimum=1),
    }
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) and env_str("PSYROOM_BROKER_KEYPREFIX", ""):
    # Several deployments (or parallel test processes) can share one Redis: each keeps its keys under a prefix.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env_str("PSYROOM_BROKER_KEYPREFIX", "")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"generation.tasks.*": {"queue": "generation"}}
# A generation task holds a GPU for minutes: take one at a time, and acknowledge only when done so that a killed
# worker's task is delivered again (chunks are idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Generation ------------------------------------------------------------------------------------------------

# The model spec (by name) that runs use when none is given; the bundled model by default.
PSYROOM_MODEL = env_str("PSYROOM_MODEL", "smollm2-135m-instruct")
# Where weights converted from GGUF are kept so that a worker's second start does not convert again.
# Where built dataset releases are kept, one folder per release (releases/services.py); a build writes into a
# temporary folder beside it and renames it into place only when complete.
PSYROOM_RELEASES_DIR = Path(env_str("PSYROOM_RELEASES_DIR", str(VAR_DIR / "releases")))
PSYROOM_MODEL_CACHE = Path(env_str("PSYROOM_MODEL_CACHE", str(VAR_DIR / "model-cache")))
# "auto" picks CUDA when present.
PSYROOM_DEVICE = env_str("PSYROOM_DEVICE", "auto")
# What an HTTP model spec may use, both set by the operator, never in the database (curators must not be able to
# point the worker, and a key from its environment, at a server of their choosing):
# - the credentials a spec may name, name -> the environment variable that holds the key ("vllm=VLLM_API_KEY");
# - the servers a spec's base_url may lie under, as URL prefixes ("http://gpu-1:8000/v1"); none by default.
PSYROOM_MODEL_CREDENTIALS = env_credentials("PSYROOM_MODEL_CREDENTIALS")
# How many runs one user may have waiting or running at once (queued, running or stalled), and how many of them
# "regenerate with critique" runs of a reviewer.
PSYROOM_RUNS_PER_USER = env_int("PSYROOM_RUNS_PER_USER", 20, minimum=1)
PSYROOM_REGENERATIONS_PER_USER = env_int("PSYROOM_REGENERATIONS_PER_USER", 3, minimum=1)
# How many approved dialogues each of the 35 sub-emotions should have: the coverage dashboard's quota, and what its
# "fill the gap" button generates up to.
PSYROOM_COVERAGE_QUOTA = env_int("PSYROOM_COVERAGE_QUOTA", 50, minimum=1)
# A review that took fewer seconds than this is flagged as suspicious on the throughput dashboard (a campaign's
# policy "min_seconds" overrides it for that campaign).
PSYROOM_REVIEW_MIN_SECONDS = env_int("PSYROOM_REVIEW_MIN_SECONDS", 20, minimum=0)
# A worker executing a run writes a heartbeat on it from a background thread every PSYROOM_RUN_HEARTBEAT_S seconds
# (0: no thread, a heartbeat only with each model call), so that a long step or a model load still beats. A running
# run whose heartbeat is older than PSYROOM_RUN_STALE_S shows as `stalled` (its worker died) and may be resumed; a
# worker resumes stalled runs when it starts, each at most PSYROOM_RUN_AUTO_RESUMES times (a curator may always).
PSYROOM_RUN_HEARTBEAT_S = env_int("PSYROOM_RUN_HEARTBEAT_S", 10, minimum=0)
PSYROOM_RUN_STALE_S = env_int("PSYROOM_RUN_STALE_S", 60, minimum=2)
PSYROOM_RUN_AUTO_RESUMES = env_int("PSYROOM_RUN_AUTO_RESUMES", 3, minimum=0)
if PSYROOM_RUN_HEARTBEAT_S and PSYROOM_RUN_STALE_S < 2 * PSYROOM_RUN_HEARTBEAT_S:
    raise ImproperlyConfigured(
        f"PSYROOM_RUN_STALE_S={PSYROOM_RUN_STALE_S} must be at least twice PSYROOM_RUN_HEARTBEAT_S="
        f"{PSYROOM_RUN_HEARTBEAT_S}, or a live run would show as stalled between two heartbeats"
    )
PSYROOM_MODEL_SERVERS = env_url_prefixes("PSYROOM_MODEL_SERVERS")

# --- Imports -------------------------------------------------------------------------------------------------------

# What one import may read (generation/importers/reading.py; docs/operations.md#imports). Files and archives are read as
# streams: these bound memory and work, whatever an archive claims about itself.
# The most bytes in memory at once: a JSONL line, or a whole file of a format read whole (a JSON list, a case file).
PSYROOM_IMPORT_MAX_RECORD_BYTES = env_int("PSYROOM_IMPORT_MAX_RECORD_BYTES", 16 * 2**20, minimum=1024)
# The most bytes one file or archive member may hold, and one import may read in all (unpacked).
PSYROOM_IMPORT_MAX_FILE_BYTES = env_int("PSYROOM_IMPORT_MAX_FILE_BYTES", 2**30, minimum=1024)
PSYROOM_IMPORT_MAX_TOTAL_BYTES = env_int("PSYROOM_IMPORT_MAX_TOTAL_BYTES", 4 * 2**30, minimum=1024)
# The most files of a folder, or members of an archive, one import may open.
PSYROOM_IMPORT_MAX_FILES = env_int("PSYROOM_IMPORT_MAX_FILES", 100_000, minimum=1)
# The deepest nesting of JSON arrays and objects (the formats need 4).
PSYROOM_IMPORT_MAX_DEPTH = env_int("PSYROOM_IMPORT_MAX_DEPTH", 32, minimum=4)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
