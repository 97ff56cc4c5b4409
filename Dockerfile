# The pgbisync image: Node 24 runs the TypeScript sources directly (type stripping), with the production
# dependencies only. Build: docker build -t pgbisync . ; run: see deploy/kubernetes.yaml and
# docs/deployment.md. scripts/packaging-smoke.sh checks what a machine without a container engine can.
FROM node:24-bookworm-slim
ENV NODE_ENV=production PGBISYNC_LOG_FORMAT=json
WORKDIR /opt/pgbisync
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY src ./src
USER node
# /metrics, /healthz (200 active or standby, 503 unhealthy), /status; bind it with http.host: 0.0.0.0.
EXPOSE 9187
ENTRYPOINT ["node", "bin/pgbisync.js"]
CMD ["run", "-c", "/etc/pgbisync/pgbisync.yaml"]
