# One image for every Vitrine process: the API (`vitrine serve`), the job worker
# (`vitrine worker`) and the one-shot schema upgrade (`vitrine db upgrade`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject alone, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip install -r /tmp/requirements.txt

COPY . .
# The compiled translations are built here, not committed; then Vitrine itself.
RUN pybabel compile -d locales -D messages \
    && pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app vitrine \
    && mkdir -p /app/var && chown vitrine /app/var

USER vitrine
EXPOSE 8000
# SIGTERM: the API lets requests under way finish and the worker its running jobs.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["vitrine", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-demo"]
