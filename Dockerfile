# The Pulse image: `pulse` is the entry point (`worker` by default; `simulate`, `ask`, ... too).
# Used by docker-compose.yml for the workers and the simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY kpis ./kpis
COPY detectors ./detectors
COPY alerting ./alerting
COPY simulator ./simulator
COPY pulse ./pulse
COPY core ./core
COPY evaluation ./evaluation
COPY assistant ./assistant
COPY dashboard ./dashboard
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 pulse \
    && mkdir -p /data \
    && chown pulse:pulse /data
USER pulse
WORKDIR /data

ENV PULSE_DATA_DIR=/data \
    PULSE_METRICS_PORT=9464
EXPOSE 9464
VOLUME ["/data"]

ENTRYPOINT ["pulse"]
CMD ["worker"]
