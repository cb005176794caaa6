# The image the Kubernetes examples (docs/kubernetes-*.yaml) and docs/runbooks.md use:
#   docker build -t regression-tracking .
#   docker run --rm -e DATABASE_URL=postgres://… regression-tracking cleanup_orphaned_regressions --dry-run
# Its entrypoint is the console script, so the arguments are a manage.py command and its options.
# The same image serves the admin with gunicorn (--entrypoint gunicorn): docs/deployment.md.

# Build stage: the project's wheel and the wheels of its dependencies (with every extra: the
# optional backends and gunicorn).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY regression_tracking ./regression_tracking
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[statsd,prometheus,sentry,serve]"

# Run stage: the wheels installed offline, the admin's static files collected, a non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_STATIC_ROOT=/opt/regression-tracking/static \
    REGRESSION_TRACKING_LOG_FORMAT=json
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels \
        "regression-tracking[statsd,prometheus,sentry,serve]" \
    && rm -rf /tmp/wheels \
    && regression-tracking collectstatic --no-input -v 0 \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["regression-tracking"]
CMD ["help", "cleanup_orphaned_regressions"]
