# budget-guard: a slim, non-root image running `budget-guard serve`.
#
# Two stages: the build stage installs the package and its dependencies into a virtualenv
# at /opt/venv; the runtime stage copies only that virtualenv, so no wheels, build tools or
# pip caches reach the final image. Both stages use the same base image, so the interpreter
# the venv's python links to exists in both.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# What pyproject.toml packages: the four packages (with pricing/data/*.toml and
# db/migrations as package data) and README.md (its `readme`).
COPY pyproject.toml README.md ./
COPY bot bot
COPY jobs jobs
COPY db db
COPY pricing pricing
# A regular (non-editable) install; then pip and setuptools leave the venv: nothing at
# runtime needs them.
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg \
    DATABASE_URL=sqlite:////data/budget-guard.db PORT=3000
RUN useradd --create-home --uid 10001 budget-guard \
 && mkdir /data && chown budget-guard /data
COPY --from=build /opt/venv /opt/venv
USER budget-guard
# The SQLite file lives here; so does budget-guard.toml unless BUDGET_GUARD_CONFIG points elsewhere.
WORKDIR /data
VOLUME /data
EXPOSE 3000
# Healthy only when /healthz answers 2xx (it checks the database); no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=4); sys.exit(0 if 200 <= r.status < 300 else 1)"]
# serve --upgrade-db migrates the schema first. Replicas on one PostgreSQL database may all
# start this way: each upgrade takes an advisory lock on the schema, so they migrate one at a
# time and the rest find nothing to do (a separate `budget-guard db upgrade` step works too).
CMD ["budget-guard", "serve", "--upgrade-db"]
