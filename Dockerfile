# The salescast image: worker, generator and (later) retrainer share it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY salescast ./salescast
COPY stream ./stream
COPY models ./models
RUN pip install --no-cache-dir .
ENV SALESCAST_DATA_DIR=/var/lib/salescast
VOLUME /var/lib/salescast
EXPOSE 6066 9108
ENTRYPOINT ["salescast"]
CMD ["worker"]
