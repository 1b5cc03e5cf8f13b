# fazhi-ducha worker image: `ducha worker` by default; the same image runs the one-shot commands
# (`ducha migrate`, `ducha schedules sync`, `ducha calendar load FILE`, `ducha registry load FILE`).
# Build: docker build -t fazhi-ducha .   (docker-compose.yml builds it for its app services)
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DUCHA_LOG_FORMAT=json

# A CJK font for the charts of the annual report's .docx (documents/charts.py): 5 MB, where
# fonts-noto-cjk is 91 MB.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY pyproject.toml requirements.lock README.md ./
COPY schemas/ schemas/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
COPY rules/ rules/
COPY config/ config/
COPY reports/ reports/
COPY audit/ audit/
COPY documents/ documents/
# Read-only application files, at the same relative paths as in the repository:
# /app/migrations and /app/data (official calendars, demo registry).
COPY migrations/ /app/migrations/
COPY data/ /app/data/

# Install the project with the locked versions (runtime dependencies only, no test extras).
# The code looks for migrations/ and data/ next to its packages (config.settings.PROJECT_ROOT),
# which for an installed package is site-packages: link them there, and fail the build if the
# installed code cannot see its migrations. `cd /` so that python imports the installed package.
RUN pip install -c requirements.lock . \
 && cd / \
 && root="$(python -c 'from config.settings import PROJECT_ROOT; print(PROJECT_ROOT)')" \
 && ln -s /app/migrations /app/data "$root"/ \
 && python -c 'import sys; from workers.migrate import MIGRATIONS_DIR as d; sys.exit(0 if any(d.glob("*.sql")) else f"no migrations in {d}")' \
 && rm -rf /build

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/ducha ducha
USER ducha
WORKDIR /app

ENTRYPOINT ["ducha"]
CMD ["worker"]
