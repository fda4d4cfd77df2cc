#!/bin/bash
# Entry point of the stream-processor image (runs under tini).
#   executor    the Spark executor. The driver (this image's default command, client mode)
#               creates executor pods from the same image with the single argument
#               `executor` and SPARK_* variables; this starts the executor backend the way
#               Spark's own image entrypoint does.
#   anything    exec'd as is: by default `python -m stream_processor`, the Spark driver.
set -euo pipefail

if [[ "${1:-}" != "executor" ]]; then
  exec "$@"
fi
shift

# Executor JVM options arrive as SPARK_JAVA_OPT_0..N, in order.
java_opts=()
while IFS= read -r name; do
  java_opts+=("${!name}")
done < <(compgen -v SPARK_JAVA_OPT_ | sort -t_ -k4 -n)

classpath="${SPARK_HOME}/jars/*"
if [[ -n "${SPARK_CONF_DIR:-}" ]]; then classpath="${SPARK_CONF_DIR}:${classpath}"; fi
if [[ -n "${SPARK_EXTRA_CLASSPATH:-}" ]]; then classpath="${classpath}:${SPARK_EXTRA_CLASSPATH}"; fi

exec "${JAVA_HOME}/bin/java" \
  "${java_opts[@]}" \
  "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
  -cp "${classpath}" \
  org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
  --driver-url "${SPARK_DRIVER_URL}" \
  --executor-id "${SPARK_EXECUTOR_ID}" \
  --cores "${SPARK_EXECUTOR_CORES}" \
  --app-id "${SPARK_APPLICATION_ID}" \
  --hostname "${SPARK_EXECUTOR_POD_IP}" \
  --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
  --podName "${SPARK_EXECUTOR_POD_NAME}" \
  "$@"
