# One image for every role: web, worker-scans, worker-letters, beat (docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Pango for WeasyPrint; Noto fonts so letters render in all 17 languages (CJK included).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
      fonts-noto-core fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY campaign ./campaign
COPY scanning ./scanning
COPY letters ./letters
RUN pip install --no-cache-dir .
COPY . .
RUN SECRET_KEY=build-only python manage.py catalogues compile
RUN useradd --system --home /app sys && mkdir -p /app/var && chown -R sys /app/var
USER sys
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput -v0
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
