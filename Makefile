# ngx_voice: build, run and test.
#
#   make            build build/ngx_voice_module.so against the installed nginx
#   make run        install what is missing, build, start nginx on :5050 (.env)
#   make test       install what the tests need, build, run the whole suite
#   make test SANITIZE=address,undefined
#                   the same against nginx 1.22.1 built with ASan+UBSan
#   make test NGINX_VERSION=1.26.3
#                   the same against that nginx release built from its
#                   pristine source (Debian's orig tarball, verified)
#   make check-style
#                   the C style of STYLE.md (80 columns, no tabs or trailing
#                   spaces, peer text escaped before it is logged)
#   NGINX_SRC=/path/to/nginx-x.y.z make
#                   build against any nginx source tree (--with-compat)
#   make bench      the load rig, 100 calls for 20 s: one JSON line
#   make soak       200 calls for 10 minutes, then the leak checks
#   make fuzz       build the libFuzzer harnesses (clang, ASan+UBSan) and
#                   run each for FUZZ_SECONDS (7) on its seed corpus
#   make fuzz FUZZ_SECONDS=600 FUZZERS="twilio realtime"
#                   a long run, of some harnesses only
#   make image-test build the image with podman and run it (health check,
#                   webhooks, graceful stop); validates compose and fly.toml
#   make compose-check
#                   docker-compose.yml (docker-compose config) and fly.toml
#   make tunnel-quick
#                   a cloudflared quick tunnel to :$(PORT) (prints its URL)
#   make deploy     fly deploy (fly.toml);  make logs: fly logs

SHELL      := /bin/bash
TOP        := $(CURDIR)
BUILD      := $(TOP)/build
MODULE     := $(BUILD)/ngx_voice_module.so
SANITIZE   ?=
NGINX_SRC  ?=
NGINX_VERSION ?=
PORT       ?= 5050
PROVE_ARGS ?= t/
FUZZ_SECONDS ?= 7
FUZZERS    ?=

SOURCES    := config ngx_voice_module.c $(wildcard src/*.c src/*.h)
RIG        := $(BUILD)/voice-rig
RIG_SRC    := $(wildcard bench/*.c bench/*.h)
WARN       := -Wall -Wextra -Werror
# Debian's own hardening, as the stock nginx binary is built
HARDEN     := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat \
              -Werror=format-security

ifneq ($(SANITIZE),)
  # An nginx of our own, built from Debian's source package with ASan+UBSan;
  # the module is built into the same tree.
  NGINX_SRC := $(BUILD)/asan/nginx-1.22.1
  MODULE    := $(BUILD)/asan/ngx_voice_module.so
  SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined \
               -fno-sanitize=nonnull-attribute
  # nginx passes memcpy(dst, NULL, 0) by design (nonnull-attribute), and
  # reads unaligned words in its parser on x86 unless told not to.
  SAN_DEFS  := -DNGX_DEBUG_PALLOC=1 -DNGX_HAVE_NONALIGNED=0
  export TEST_NGINX_BINARY := $(NGINX_SRC)/objs/nginx
  # A dynamic module's generated ngx_module_names/ngx_modules clash with the
  # binary's (exported with -Wl,-E): ASan's ODR check aborts load_module.
  # nginx does not free everything at exit: no leak checking.
  export ASAN_OPTIONS ?= detect_leaks=0:detect_odr_violation=0
endif

ifneq ($(NGINX_VERSION),)
  ifneq ($(SANITIZE),)
    $(error SANITIZE builds Debian's nginx 1.22.1: no NGINX_VERSION with it)
  endif
  # nginx.org's release, unpacked by util/fetch-nginx-release, built
  # whole (--with-compat) with the modules of Debian's stock nginx-dev
  # tree, optimised and hardened as Debian builds it; the module beside it.
  NGINX_SRC := $(BUILD)/nginx-$(NGINX_VERSION)
  MODULE    := $(BUILD)/nginx-$(NGINX_VERSION)-module/ngx_voice_module.so
  NGX_CONF_MODULES := --with-pcre-jit --with-http_realip_module \
        --with-http_auth_request_module --with-http_v2_module \
        --with-http_dav_module --with-http_slice_module
  NGX_OPT   := -O2 $(HARDEN)
  export TEST_NGINX_BINARY := $(NGINX_SRC)/objs/nginx
endif

# a tree of our own: nginx itself is built too, not only the module
OWN_NGINX  := $(if $(SANITIZE)$(NGINX_VERSION),yes)

export TEST_NGINX_MODULE := $(MODULE)

RIG        := $(BUILD)/voice-rig
RIG_SRC    := $(wildcard bench/*.c bench/*.h)
SOAK_ARGS  ?=

.PHONY: all build deps test-deps run test valgrind check-style fuzz clean \
        image-test compose-check tunnel-quick deploy logs \
        bench-deps bench bench-smoke soak

all: build

build: $(MODULE)

ifeq ($(NGINX_SRC),)

# Debian's nginx-dev ships a configured-ready tree and the flags the stock
# binary was built with; a module built from it loads into /usr/sbin/nginx.
NGX_DEV := /usr/share/nginx/src

$(MODULE): $(SOURCES)
	@test ! -x util/check-build-deps || util/check-build-deps
	rm -rf $(BUILD)/nginx && mkdir -p $(BUILD) && cp -r $(NGX_DEV) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="-g -O2 -fPIC $(HARDEN) $(filter-out -Werror,$(WARN))" \
	        --with-ld-opt="-fPIC -Wl,-z,relro -Wl,-z,now" \
	        --add-dynamic-module=$(TOP) >$(BUILD)/configure.log 2>&1 || \
	    { tail -20 $(BUILD)/configure.log; exit 1; }
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_voice_module.so $@.tmp && mv -f $@.tmp $@

else

# nginx's own CFLAGS already end in -Werror (auto/cc/gcc); -Werror in
# --with-cc-opt would also reach configure's feature tests and make some
# fail (pwrite, strerrordesc_np "not found"), so it is filtered out here.
NGX_CONF_ARGS := --with-compat --with-debug \
        --with-http_ssl_module --with-http_stub_status_module \
        --with-threads $(NGX_CONF_MODULES) \
        --with-cc-opt="-g $(or $(NGX_OPT),-O1) -fPIC $(SAN_FLAGS) $(SAN_DEFS) $(filter-out -Werror,$(WARN))" \
        --with-ld-opt="$(SAN_FLAGS)" \
        --add-dynamic-module=$(TOP)

# Configure (which makes nginx rebuild entirely) only when the tree is not
# yet configured with these arguments or our config file changed.
$(MODULE): $(SOURCES) $(if $(OWN_NGINX),$(NGINX_SRC)/configure)
	@test ! -x util/check-build-deps || util/check-build-deps --no-nginx-dev
	@mkdir -p $(BUILD)
	cd $(NGINX_SRC) && \
	if [ objs/Makefile -nt $(TOP)/config ] && \
	   [ "$$(cat objs/ngx_voice.conf-args 2>/dev/null)" = '$(strip $(NGX_CONF_ARGS))' ]; then \
	    echo "$(NGINX_SRC): already configured"; \
	else \
	    ./configure $(NGX_CONF_ARGS) >$(BUILD)/configure.log 2>&1 || \
	        { tail -20 $(BUILD)/configure.log; exit 1; }; \
	    echo '$(strip $(NGX_CONF_ARGS))' >objs/ngx_voice.conf-args; \
	fi
	$(MAKE) -C $(NGINX_SRC) -f objs/Makefile $(if $(OWN_NGINX),build,modules)
	mkdir -p $(dir $@) && cp $(NGINX_SRC)/objs/ngx_voice_module.so $@.tmp \
	    && mv -f $@.tmp $@

endif

$(BUILD)/asan/nginx-1.22.1/configure:
	util/fetch-nginx-source $(BUILD)/asan

ifneq ($(NGINX_VERSION),)
$(BUILD)/nginx-$(NGINX_VERSION)/configure:
	util/fetch-nginx-release $(NGINX_VERSION) $(BUILD)
endif

deps:
	@util/install-deps build

test-deps:
	@util/install-deps $(if $(SANITIZE),asan,$(if $(NGINX_VERSION),source,test))

run: deps build
	@util/run-local $(PORT)

test: test-deps
	$(MAKE) build
	prove -I t/lib $(PROVE_ARGS)
	cd twilio && node --test

# A whole call on this machine with no accounts (demo/run): nginx with the
# module and conf/ngx_voice.conf, a stand-in for OpenAI on TLS, a simulated
# Twilio caller; prints the timeline, writes demo/call.wav and call.png.
.PHONY: demo
demo:
	@util/install-deps demo
	$(MAKE) build
	demo/run

# the call tests with nginx under valgrind's memcheck
valgrind: test-deps
	$(MAKE) build
	TEST_NGINX_USE_VALGRIND=1 prove -I t/lib \
	    $(if $(filter-out t/,$(PROVE_ARGS)),$(PROVE_ARGS),t/1*.t)

# the load rig (bench/): libwebsockets, OpenSSL
$(RIG): $(RIG_SRC)
	@mkdir -p $(BUILD)
	$(CC) -O2 -g $(WARN) $(HARDEN) $$(pkg-config --cflags libwebsockets) \
	    -o $@.tmp $(filter %.c,$(RIG_SRC)) \
	    $$(pkg-config --libs libwebsockets) -lssl -lcrypto && mv -f $@.tmp $@

bench-deps:
	@util/install-deps bench

# 100 calls for 20 s, worker and rig on different cores: one JSON line
bench: bench-deps
	@$(MAKE) --no-print-directory -s build $(RIG)
	@bench/run --calls 100 --seconds 20

# 5 calls for 3 s: the rig's own check, also run by t/120-rig.t
bench-smoke: bench-deps
	@$(MAKE) --no-print-directory -s build $(RIG)
	@bench/run --calls 5 --seconds 3 --floor-seconds 1

# 200 calls for 10 minutes on the plain build (SOAK_ARGS="--seconds 60")
soak: bench-deps
	@$(MAKE) --no-print-directory -s build $(RIG)
	@bench/soak $(SOAK_ARGS)
# util/check-style checks itself on fixture files first
check-style:
	util/check-style --self-test >/dev/null || util/check-style --self-test
	util/check-style

# libFuzzer harnesses (fuzz/) against a clang-built nginx tree of their own
fuzz:
	util/build-fuzz
	util/run-fuzz $(FUZZ_SECONDS) $(FUZZERS)

# the image, compose and Fly (README.md: "Docker and compose", "Fly.io")
image-test: compose-check
	@util/install-deps image
	$(if $(filter 0,$(shell id -u)),,sudo) util/image-test

compose-check:
	util/compose-check

# each checks for its tool (and account) first and names what is missing
FLYCTL = $(shell command -v flyctl || command -v fly)

tunnel-quick:
	@command -v cloudflared >/dev/null || { echo "make tunnel-quick: cloudflared not found; install it from https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/" >&2; exit 1; }
	cloudflared tunnel --no-autoupdate --url http://localhost:$(PORT)

deploy logs:
	@test -n "$(FLYCTL)" || { echo "make $@: flyctl not found; install it from https://fly.io/docs/flyctl/install/" >&2; exit 1; }
	@$(FLYCTL) auth whoami >/dev/null 2>&1 || { echo "make $@: not logged in to Fly.io; run $(notdir $(FLYCTL)) auth login" >&2; exit 1; }
	$(FLYCTL) $(if $(filter deploy,$@),deploy,logs)

clean:
	rm -rf $(BUILD) t/servroot*
