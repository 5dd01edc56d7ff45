# The labstream image: every `labstream` command (db, cdc, worker, simulate, ...).
# Used by docker-compose.yml; `docker build -t labstream:local .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# psycopg[binary], psycopg2-binary and confluent-kafka ship wheels with libpq and
# librdkafka inside: no compiler or system libraries needed.
COPY . /app
RUN pip install . \
    && useradd --create-home --uid 10001 labstream
USER labstream
# local job backend: jobs run as child processes in this container
ENV LABSTREAM_STATE_DIR=/home/labstream/.state

CMD ["labstream", "--help"]
