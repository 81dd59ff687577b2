# The Debian package: `cpack -G DEB` in a build folder, after the build,
# makes stackflip_<version>_<arch>.deb (README "Install"; the test is
# tests/e2e/package_e2e.sh). Included by the top CMakeLists.txt.
#
#   /usr/bin/stackflip
#   /lib/systemd/system/stackflip-{run.service,reconcile.service,reconcile.timer}
#                                       (examples/ci/systemd, not enabled)
#   /etc/stackflip/env                  conffile, 0600: the units' settings, secrets
#   /usr/share/stackflip/               the JSON schemas, an example host.yaml
#   /usr/share/man/man1/stackflip.1.gz  and the bash completion, generated
#                                       from the command table (docgen.cc)
#   /usr/share/doc/stackflip/           README, examples, copyright, changelog
#
# The maintainer scripts (postinst, prerm, postrm) create the stackflip
# system user and /var/lib/stackflip (0700), and remove the state on purge.
set(PKG ${PROJECT_SOURCE_DIR}/scripts/package)

# The changelog names the version the package has: keep them in step.
file(STRINGS ${PKG}/changelog changelog_head LIMIT_COUNT 1)
if(NOT changelog_head MATCHES "^stackflip \\(${PROJECT_VERSION}\\) ")
  message(FATAL_ERROR "scripts/package/changelog starts with '${changelog_head}': "
                      "expected an entry for version ${PROJECT_VERSION} first")
endif()

# Debian wants man pages and changelogs compressed, reproducibly (-n: no
# name or time stamp in the header).
set(STACKFLIP_MAN_GZ ${PROJECT_BINARY_DIR}/doc/stackflip.1.gz)
set(STACKFLIP_CHANGELOG_GZ ${PROJECT_BINARY_DIR}/doc/changelog.gz)
add_custom_command(OUTPUT ${STACKFLIP_MAN_GZ}
  COMMAND gzip -9n -c ${STACKFLIP_MAN} > ${STACKFLIP_MAN_GZ}
  DEPENDS ${STACKFLIP_MAN})
add_custom_command(OUTPUT ${STACKFLIP_CHANGELOG_GZ}
  COMMAND gzip -9n -c ${PKG}/changelog > ${STACKFLIP_CHANGELOG_GZ}
  DEPENDS ${PKG}/changelog)
add_custom_target(stackflip_package_files ALL DEPENDS ${STACKFLIP_MAN_GZ} ${STACKFLIP_CHANGELOG_GZ})

install(TARGETS stackflip RUNTIME DESTINATION bin)
# Stripped as dh_strip does: the symbols and the .comment and .note
# sections go (the build folder keeps the unstripped binary).
install(CODE [[
  execute_process(COMMAND strip --remove-section=.comment --remove-section=.note
                          --strip-unneeded "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/bin/stackflip"
                  COMMAND_ERROR_IS_FATAL ANY)
]])
install(FILES ${STACKFLIP_MAN_GZ} DESTINATION share/man/man1)
install(FILES ${STACKFLIP_COMPLETION} DESTINATION share/bash-completion/completions
        RENAME stackflip)
install(FILES ${PROJECT_SOURCE_DIR}/examples/ci/systemd/stackflip-run.service
              ${PROJECT_SOURCE_DIR}/examples/ci/systemd/stackflip-reconcile.service
              ${PROJECT_SOURCE_DIR}/examples/ci/systemd/stackflip-reconcile.timer
        DESTINATION /lib/systemd/system)
install(FILES ${PKG}/env DESTINATION /etc/stackflip PERMISSIONS OWNER_READ OWNER_WRITE)
install(FILES ${PROJECT_SOURCE_DIR}/schema/stackflip.schema.json
              ${PROJECT_SOURCE_DIR}/schema/observed.schema.json ${PKG}/host.yaml
        DESTINATION share/stackflip)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PKG}/copyright ${STACKFLIP_CHANGELOG_GZ}
        DESTINATION share/doc/stackflip)
# What lintian reports that is meant (the file says why).
install(FILES ${PKG}/lintian-overrides DESTINATION share/lintian/overrides RENAME stackflip)
# The examples as documents: scripts among them are not made executable
# under /usr/share/doc; the screenshots are the README's.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/ DESTINATION share/doc/stackflip/examples
        FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
        PATTERN screenshots EXCLUDE)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/screenshots/
        DESTINATION share/doc/stackflip/screenshots)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME stackflip)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# No mailing list yet: example.org stands for the project's address.
set(CPACK_PACKAGE_CONTACT "stackflip developers <stackflip@example.org>")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "GitOps failover for pairs of database stacks")
set(CPACK_PACKAGE_DESCRIPTION "stackflip keeps an application's stacks, one active and the others standby,
as a YAML file in Git says: which stack is active, which way PostgreSQL
replicates, which stacks are in maintenance, where the traffic address
(PowerDNS, PgBouncer) points. It observes the providers, plans ordered and
guarded steps, and applies them. A failover is a reviewed commit.

This package has the binary, systemd units for the reconcile loop (not
enabled), the man page, bash completion, the JSON schemas and examples.")
# The libraries it links, as dpkg-shlibdeps finds them; adduser for the
# maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
# HTTPS to Git and the providers needs the CA bundle; ssh-keygen and gpg
# check signed commits (--require-signed).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "openssh-client, gpg")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PKG}/postinst ${PKG}/prerm ${PKG}/postrm ${PKG}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
