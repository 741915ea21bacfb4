"""Settings for Secure Your Server. One file, every deployment choice read from the environment."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_host_port, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# A dev default that `manage.py check --deploy` flags (security.W009): short, marked insecure.
DEV_SECRET_KEY = "django-insecure-dev-only-change-me"
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY) or DEV_SECRET_KEY
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000", schemes=("http", "https"))
PUBLIC_BASE_URL = PUBLIC_BASE_URL.rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [PUBLIC_BASE_URL])

INSTALLED_APPS = [
    "config.apps.SecureAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "anymail",
    "scanning",
    "campaign",
    "letters",
    "reporting",
    "rest_framework",
    "drf_spectacular",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "config.accounts.SecondFactorMiddleware",
    "campaign.preferences.StaffLanguageMiddleware",  # the admin in the user's own language
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it turns lockouts into pages
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

# --- Accounts: passwords, lockout, second factor -------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "config.accounts.LoginThrottleBackend",  # refuses a locked-out username before the password
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# After LOGIN_FAILURE_LIMIT wrong passwords for one username (from anywhere), or from one address
# (for any username: password spraying), that username or address is locked for
# LOGIN_LOCKOUT_MINUTES. Behind the TLS proxy the address is the one the proxy forwards.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.accounts.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.accounts.lockout_response"
AXES_VERBOSE = False
# Every staff account needs a confirmed TOTP device before it can use the admin. Only the local
# demo (`make run`) turns this off; `check --deploy` warns when it is off.
MFA_REQUIRED = env_bool("MFA_REQUIRED", True)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Secure Your Server")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # no QR codes or keys of other people's devices

# --- Database -----------------------------------------------------------------------------------
DEFAULT_SQLITE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASE_URL = env_str("DATABASE_URL", DEFAULT_SQLITE_URL) or DEFAULT_SQLITE_URL
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=60)
except Exception as exc:  # dj-database-url raises ValueError/KeyError on unknown schemes
    raise ImproperlyConfigured(
        f"DATABASE_URL={DATABASE_URL!r} is not a database URL this project can use "
        f"(postgres://user@host:5432/name or sqlite:///path): {exc}"
    ) from None
if _database["ENGINE"] not in (
    "django.db.backends.postgresql",
    "django.db.backends.sqlite3",
):
    raise ImproperlyConfigured(
        f"DATABASE_URL={DATABASE_URL!r}: only PostgreSQL and SQLite are supported."
    )
if _database["ENGINE"] == "django.db.backends.postgresql" and not _database.get("NAME"):
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} names no database.")
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker share this file: WAL lets one write while the other reads,
    # IMMEDIATE takes the write lock up front instead of failing half-way with "database is locked".
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery --------------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    env_url("REDIS_URL", REDIS_URL, schemes=("redis", "rediss"))
    CELERY_BROKER_URL = REDIS_URL
    # visibility_timeout is set below, from the longest task and countdown.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # No Redis: kombu's filesystem transport. The web process and the worker are separate processes
    # on one machine; files in var/broker/ carry the messages between them (memory:// would not).
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # else kombu writes ./control/
        "store_processed": False,
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Workers keep trying to reach a restarted broker instead of exiting after 100 attempts.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# django-celery-beat copies these into its tables at start; staff can add more in the admin.
# The outbox's dispatcher and reconciler are added below, with their settings.
CELERY_BEAT_SCHEDULE = {
    # Re-probes, reminders, escalation and closing: the cases whose next action is due.
    "campaign-schedule-sweep": {
        "task": "campaign.schedule_sweep",
        "schedule": 5 * 60,
        "options": {"expires": 4 * 60},
    },
    "refresh-figures": {
        "task": "reporting.refresh_figures",
        "schedule": env_int("FIGURES_REFRESH_SECONDS", 10 * 60, minimum=10),
        "options": {"expires": 5 * 60},
    },
}

# --- Mail ---------------------------------------------------------------------------------------
MAIL_ESP = env_str("MAIL_ESP", "local").lower()
MAIL_ESP_API_KEY = env_str("MAIL_ESP_API_KEY")
_ESP_BACKENDS = {
    "postmark": ("anymail.backends.postmark.EmailBackend", "POSTMARK_SERVER_TOKEN"),
    "mailgun": ("anymail.backends.mailgun.EmailBackend", "MAILGUN_API_KEY"),
    "amazon_ses": ("anymail.backends.amazon_ses.EmailBackend", None),
    "sendgrid": ("anymail.backends.sendgrid.EmailBackend", "SENDGRID_API_KEY"),
}
ANYMAIL: dict[str, object] = {
    # No tracking pixels or rewritten links in an advisory letter from a public agency.
    "SEND_DEFAULTS": {"track_opens": False, "track_clicks": False},
}
ANYMAIL_WEBHOOK_SECRET = env_str("ANYMAIL_WEBHOOK_SECRET")
if ANYMAIL_WEBHOOK_SECRET:
    if ":" not in ANYMAIL_WEBHOOK_SECRET:
        raise ImproperlyConfigured("ANYMAIL_WEBHOOK_SECRET must be 'user:password'.")
    ANYMAIL["WEBHOOK_SECRET"] = ANYMAIL_WEBHOOK_SECRET
if MAIL_ESP == "local":
    # Development default: letters are written to files under var/mail/, never sent.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
elif MAIL_ESP == "test":
    # anymail's test backend: what the integration suite's workers use; nothing leaves.
    EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
elif MAIL_ESP == "smtp":
    # The compose file's local mail catcher.
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    _smtp = env_host_port("MAIL_SMTP_ADDR", "mailcatcher:1025")
    assert _smtp is not None
    EMAIL_HOST, EMAIL_PORT = _smtp
    # A server that holds its reply must not hold the send task past its time limit.
    EMAIL_TIMEOUT = env_int("MAIL_SMTP_TIMEOUT", 60, minimum=1)
elif MAIL_ESP in _ESP_BACKENDS:
    EMAIL_BACKEND, _key_setting = _ESP_BACKENDS[MAIL_ESP]
    if _key_setting:
        if not MAIL_ESP_API_KEY:
            raise ImproperlyConfigured(f"MAIL_ESP={MAIL_ESP} needs MAIL_ESP_API_KEY.")
        ANYMAIL[_key_setting] = MAIL_ESP_API_KEY
    # The tracking webhooks change letters and suppress addresses: a real ESP without the
    # secret its webhooks must present would let anyone on the internet do that.
    if not ANYMAIL_WEBHOOK_SECRET:
        raise ImproperlyConfigured(
            f"MAIL_ESP={MAIL_ESP} needs ANYMAIL_WEBHOOK_SECRET ('user:password' that the ESP's "
            "tracking webhooks present)."
        )
    if MAIL_ESP == "mailgun":
        ANYMAIL["MAILGUN_SENDER_DOMAIN"] = env_str("MAILGUN_SENDER_DOMAIN")
        # Mailgun signs each webhook with this key (Sending > Webhooks in its dashboard).
        MAILGUN_WEBHOOK_SIGNING_KEY = env_str("MAILGUN_WEBHOOK_SIGNING_KEY")
        if not MAILGUN_WEBHOOK_SIGNING_KEY:
            raise ImproperlyConfigured(
                "MAIL_ESP=mailgun needs MAILGUN_WEBHOOK_SIGNING_KEY (Mailgun's webhook signing "
                "key) to verify its tracking webhooks."
            )
        ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = MAILGUN_WEBHOOK_SIGNING_KEY
    if MAIL_ESP == "sendgrid":
        # SendGrid is community-supported by django-anymail since 15.2 (its backend warns so on
        # start); it can sign its event webhook, which anymail verifies when given the key.
        _sendgrid_key = env_str("SENDGRID_WEBHOOK_VERIFICATION_KEY")
        if _sendgrid_key:
            ANYMAIL["SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"] = _sendgrid_key
else:
    raise ImproperlyConfigured(
        f"MAIL_ESP={MAIL_ESP!r} is not one of: local, smtp, test, postmark, mailgun, "
        "amazon_ses, sendgrid (community-supported)."
    )
# Tracking webhooks are mounted at /anymail/<esp>/tracking/ for the configured ESP only.
ANYMAIL_WEBHOOK_ESPS: list[str] = [MAIL_ESP] if MAIL_ESP in _ESP_BACKENDS else []
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Secure Your Server <advisory@localhost>")
# Remediation links stay valid this many days after their campaign ends.
REMEDIATION_LINK_GRACE_DAYS = env_int("REMEDIATION_LINK_GRACE_DAYS", 30, minimum=0)
# "I fixed it - check again" on a remediation page: at most one re-probe per case per this many
# seconds.
RECHECK_MIN_INTERVAL = env_int("RECHECK_MIN_INTERVAL", 10 * 60, minimum=0)
# The recipient's forms (check again, not my server, another contact, opt-out): at most this many
# posts per remediation link, and per client address, in each window of seconds (0: no limit).
REMEDIATION_FORM_LIMIT_PER_LINK = env_int("REMEDIATION_FORM_LIMIT_PER_LINK", 10, minimum=0)
REMEDIATION_FORM_LIMIT_PER_ADDRESS = env_int("REMEDIATION_FORM_LIMIT_PER_ADDRESS", 30, minimum=0)
REMEDIATION_FORM_WINDOW = env_int("REMEDIATION_FORM_WINDOW", 60 * 60, minimum=1)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Staff-edited letter templates render under a budget (previews and workers alike): wall time,
# loop iterations and characters written, so a runaway draft fails instead of burning a CPU.
LETTER_RENDER_SECONDS = env_int("LETTER_RENDER_SECONDS", 5, minimum=1)
LETTER_RENDER_MAX_ITERATIONS = env_int("LETTER_RENDER_MAX_ITERATIONS", 100_000, minimum=100)
LETTER_RENDER_MAX_CHARS = env_int("LETTER_RENDER_MAX_CHARS", 2_000_000, minimum=10_000)

# --- Scanner and canary -------------------------------------------------------------------------
SCAN_ALLOW_PRIVATE = env_bool("SCAN_ALLOW_PRIVATE", False)
SCANNER_NAME = env_str("SCANNER_NAME", "scanner.secure-your-server.invalid")
# Who runs the scanner and where to write, as /scanning/ says; empty: the lead partner's agency
# name and reply-to address.
SCANNER_OPERATOR = env_str("SCANNER_OPERATOR", "")
SCANNER_CONTACT_EMAIL = env_str("SCANNER_CONTACT_EMAIL", "")
SCANNER_SOURCE_ADDRESSES = env_list("SCANNER_SOURCE_ADDRESSES", [])
# The address campaign scans bind as their source; empty: the system's choice.
SCAN_SOURCE_ADDRESS = env_str("SCAN_SOURCE_ADDRESS")
CANARY_DOMAIN = env_str("CANARY_DOMAIN")
if CANARY_DOMAIN.lower().rstrip(".").endswith(".invalid"):
    raise ImproperlyConfigured(
        "CANARY_DOMAIN must not be a .invalid name: .invalid is the control."
    )
CANARY_HTTP_ADDR = env_host_port("CANARY_HTTP_ADDR", "")
CANARY_TLS_ADDR = env_host_port("CANARY_TLS_ADDR", "")
CANARY_SMTP_ADDR = env_host_port("CANARY_SMTP_ADDR", "")
# A canary port known not to be a proxy, for the batch self-check; empty: no self-check.
CANARY_SELFCHECK_ADDR = env_host_port("CANARY_SELFCHECK_ADDR", "")
CANARY_SECRET = env_str("CANARY_SECRET")
RDAP_BOOTSTRAP = env_str("RDAP_BOOTSTRAP", str(BASE_DIR / "campaign" / "rdap_bootstrap"))
if RDAP_BOOTSTRAP.lower().startswith("http://"):
    raise ImproperlyConfigured(
        f"RDAP_BOOTSTRAP={RDAP_BOOTSTRAP!r}: RDAP is fetched over https only."
    )
RDAP_TIMEOUT = env_int("RDAP_TIMEOUT", 15, minimum=1)  # seconds per request; tests use less
# One lookup's whole time: every connection, redirect, referral and read together.
RDAP_DEADLINE = env_int("RDAP_DEADLINE", 45, minimum=1)
# PEM file of the CAs that RDAP servers' certificates must chain to (default: the system store).
RDAP_CA_BUNDLE = env_str("RDAP_CA_BUNDLE")
if RDAP_CA_BUNDLE and not Path(RDAP_CA_BUNDLE).is_file():
    raise ImproperlyConfigured(f"RDAP_CA_BUNDLE={RDAP_CA_BUNDLE!r} is not a file.")
RDAP_CACHE_SECONDS = env_int("RDAP_CACHE_SECONDS", 7 * 24 * 60 * 60, minimum=0)
# Reverse DNS: HOST:PORT of the resolver to ask; empty means the system's resolver.
ATTRIBUTION_DNS_SERVER = env_host_port("ATTRIBUTION_DNS_SERVER", "")
# A scan that finds an open server of unknown owner queues its attribution (DNS and RDAP).
ATTRIBUTE_AFTER_SCAN = env_bool("ATTRIBUTE_AFTER_SCAN", True)
ATTRIBUTION_DNS_TIMEOUT = env_int("ATTRIBUTION_DNS_TIMEOUT", 5, minimum=1)

# Intake: mail domains of our own receiving hosts (skipped as relay hops in spam samples), and
# the largest admin upload imported during the request (bigger ones go to a worker).
INTAKE_OWN_DOMAINS = env_list("INTAKE_OWN_DOMAINS", [])
INTAKE_SYNC_MAX_BYTES = env_int("INTAKE_SYNC_MAX_BYTES", 4 * 1024 * 1024, minimum=0)

# Campaign scans: batch size, manners and bounds (docs/probes.md). Tests shrink the waits.
SCAN_BATCH_SIZE = env_int("SCAN_BATCH_SIZE", 50, minimum=1)
SCAN_CONCURRENCY = env_int("SCAN_CONCURRENCY", 64, minimum=1)
SCAN_NETWORK_RATE = float(env_int("SCAN_NETWORK_RATE", 2, minimum=0))  # sessions/s per /24, /48
SCAN_CONNECT_TIMEOUT = float(env_int("SCAN_CONNECT_TIMEOUT", 10, minimum=1))
SCAN_REPLY_TIMEOUT = float(env_int("SCAN_REPLY_TIMEOUT", 10, minimum=1))
SCAN_EXCHANGE_TIMEOUT = float(env_int("SCAN_EXCHANGE_TIMEOUT", 30, minimum=1))
# A relay that took the test message is stored provisional; a delivery to the canary upgrades it
# whenever it comes, and one still unconfirmed this many seconds after its probe is settled.
SCAN_CONFIRM_DEADLINE = env_int("SCAN_CONFIRM_DEADLINE", 10 * 60, minimum=1)
# Greylisted (4xx) results are probed again after these delays, with the same token.
_greylist_delays = env_list("SCAN_GREYLIST_RETRY_DELAYS", ["300", "1800"])
if not all(delay.isdigit() for delay in _greylist_delays):
    raise ImproperlyConfigured("SCAN_GREYLIST_RETRY_DELAYS must be seconds, e.g. 300,1800.")
SCAN_GREYLIST_RETRY_DELAYS = [int(delay) for delay in _greylist_delays]
# A scan batch's claim lasts this long; longer than the task's hard limit (16 min), so only a
# dead worker's claim expires. A batch claimed this many times by workers that died fails.
SCAN_BATCH_LEASE = env_int("SCAN_BATCH_LEASE", 20 * 60, minimum=1)
SCAN_BATCH_MAX_CLAIMS = env_int("SCAN_BATCH_MAX_CLAIMS", 3, minimum=1)
# A pending batch whose task has not claimed it this long after it was due is enqueued again.
SCAN_PENDING_GRACE = env_int("SCAN_PENDING_GRACE", 5 * 60, minimum=1)

# --- The outbox: sending rate, leases and the reconciler ----------------------------------------
# The database is the source of truth and the broker only a doorbell: a dispatcher hands due
# letters to workers at the ESP's rate, and a reconciler repairs what a crash left behind.
LETTER_RATE_PER_MINUTE = env_int("LETTER_RATE_PER_MINUTE", 120, minimum=1)
LETTER_DISPATCH_INTERVAL = env_int("LETTER_DISPATCH_INTERVAL", 10, minimum=1)
LETTER_DISPATCH_BATCH = env_int("LETTER_DISPATCH_BATCH", 500, minimum=1)
# A dispatched letter that no worker claimed within this many seconds is dispatched again.
LETTER_DISPATCH_LEASE = env_int("LETTER_DISPATCH_LEASE", 5 * 60, minimum=1)
# A send claim lasts this long: longer than the send task's hard time limit (5 min).
LETTER_SEND_LEASE = env_int("LETTER_SEND_LEASE", 10 * 60, minimum=1)
LETTER_MAX_ATTEMPTS = env_int("LETTER_MAX_ATTEMPTS", 8, minimum=1)
LETTER_RETRY_BACKOFF = env_int("LETTER_RETRY_BACKOFF", 60, minimum=1)  # doubles, capped at 30 min
RECONCILE_INTERVAL = env_int("RECONCILE_INTERVAL", 60, minimum=1)
# The send task's hard time limit; its claim's lease must outlast it.
LETTER_SEND_TIME_LIMIT = env_int("LETTER_SEND_TIME_LIMIT", 5 * 60, minimum=5)
SCAN_BATCH_TIME_LIMIT = 16 * 60
if LETTER_SEND_LEASE <= LETTER_SEND_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"LETTER_SEND_LEASE must be longer than the send task's limit ({LETTER_SEND_TIME_LIMIT} s)."
    )
if REDIS_URL:
    # Sized to the longest task or countdown: an unacknowledged message comes back this long
    # after its worker died. The reconciler usually repairs the row well before.
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env_int(
        "CELERY_VISIBILITY_TIMEOUT",
        max(SCAN_BATCH_TIME_LIMIT, LETTER_SEND_TIME_LIMIT, *SCAN_GREYLIST_RETRY_DELAYS) + 5 * 60,
        minimum=60,
    )
CELERY_BEAT_SCHEDULE |= {
    "dispatch-letters": {
        "task": "letters.dispatch",
        "schedule": float(LETTER_DISPATCH_INTERVAL),
        "options": {"expires": LETTER_DISPATCH_INTERVAL},
    },
    "reconcile": {
        "task": "sweeps.reconcile",
        "schedule": float(RECONCILE_INTERVAL),
        "options": {"expires": RECONCILE_INTERVAL},
    },
    "reconcile-scans": {
        "task": "sweeps.reconcile_scans",
        "schedule": float(RECONCILE_INTERVAL),
        "options": {"expires": RECONCILE_INTERVAL},
    },
    # The canary asks for a confirmation after each delivery it stores; this catches any whose
    # message was lost, then settles the provisional findings past their deadline.
    "confirm-findings": {
        "task": "sweeps.confirm_findings",
        "schedule": float(RECONCILE_INTERVAL),
        "options": {"expires": RECONCILE_INTERVAL},
    },
    "settle-findings": {
        "task": "sweeps.settle_findings",
        "schedule": float(RECONCILE_INTERVAL),
        "options": {"expires": RECONCILE_INTERVAL},
    },
}

# --- Web ----------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("ja", "日本語"),
    ("ko", "한국어"),
    ("zh-hant", "繁體中文"),
    ("pt-br", "Português (Brasil)"),
    ("es", "Español"),
    ("de", "Deutsch"),
    ("nl", "Nederlands"),
    ("fr", "Français"),
    ("it", "Italiano"),
    ("da", "Dansk"),
    ("nb", "Norsk bokmål"),
    ("pl", "Polski"),
    ("lt", "Lietuvių"),
    ("ms", "Bahasa Melayu"),
    ("bg", "Български"),
    ("el", "Ελληνικά"),
]
TIME_ZONE = "UTC"
USE_I18N = True
# The public pages' and our admin additions' translations: locale/<locale>/LC_MESSAGES/django.po,
# compiled to .mo by `make install` and the image build (manage.py catalogues compile).
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"

SECURE_CONTENT_TYPE_NOSNIFF = True
# "same-origin", not "no-referrer": browsers send `Origin: null` on POSTs under no-referrer,
# which fails CSRF checks; same-origin still keeps tokens in URLs from reaching other sites.
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Behind a TLS-terminating proxy (the compose file's Caddy), which overwrites X-Forwarded-Proto:
# trust it to say the request came over https. Never set it where clients reach gunicorn directly.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
if PUBLIC_BASE_URL.startswith("https://"):
    # An https deployment is https everywhere: cookies only over TLS, http redirected, and
    # browsers told (HSTS) never to try plain http again.
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 60 * 60, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# --- Read-only API (/api/v1/) ---------------------------------------------------------------------
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "120/minute")
if not re.match(r"^[0-9]+/(second|minute|hour|day)$", API_RATE_LIMIT):
    raise ImproperlyConfigured(
        f"API_RATE_LIMIT={API_RATE_LIMIT!r}: expected requests/period, e.g. 120/minute."
    )
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.IsPartnerMember"],
    "DEFAULT_THROTTLE_CLASSES": ["api.auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Secure Your Server partner API",
    "DESCRIPTION": "Read-only: a partner's cases and findings, scoped as in the admin.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1/",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
