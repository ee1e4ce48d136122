# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022 AS base
WORKDIR C:\app
# a comment between continuation lines
RUN powershell -Command `
    # dropped
    Write-Host hi; `
    Write-Host there
ENV PATH="C:\app;${PATH}" `
    MODE=prod
ADD --checksum=sha256:abc --keep-git-dir=true https://example.com/a.zip C:\tmp\
ARG A B=2
MAINTAINER someone
