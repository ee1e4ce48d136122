FROM alpine:3.19
RUN <<EOF
set -e
echo hello > /greeting
EOF
RUN <<-'SCRIPT' sh -s
	echo "$HOME not expanded"
	SCRIPT
COPY <<conf /etc/app.conf
port=8080
conf
RUN cat <<A > /a && cat <<B > /b
first
A
second
B
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
ONBUILD RUN echo triggered
VOLUME /data /cache
STOPSIGNAL SIGTERM
