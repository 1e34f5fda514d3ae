# syntax=docker/dockerfile:1
# The same service as `make run`, with the model prepared at build time.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RECOGNITION_DATA_DIR=/data \
    RECOGNITION_MODELS_DIR=/app/models \
    STATIC_ROOT=/app/staticfiles \
    HOST=0.0.0.0 \
    PORT=8000
RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
COPY --from=build /venv /venv
WORKDIR /app
COPY . /app
# ResNet-18's weights when the build can download them, else the offline model.
# Put resnet18-f37072fd.pth next to the Dockerfile and add --weights to build offline.
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput --verbosity 0 \
 && SECRET_KEY=build-only python manage.py prepare_model --fallback \
 && chown -R app /app/models
USER app
VOLUME ["/data"]
EXPOSE 8000
# Asks /api/v1/health/ as production settings require of any request: a Host from
# ALLOWED_HOSTS and, with HTTPS=1, X-Forwarded-Proto: https (scripts/healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["python", "/app/scripts/healthcheck"]
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py ensure_admin && exec gunicorn -c gunicorn.conf.py"]
