# ngx_voice: build, run and test.
#
#   make            build build/ngx_voice_module.so against the installed nginx
#   make run        install what is missing, build, start nginx on :5050 (.env)
#   make test       install what the tests need, build, run the whole suite
#   make test SANITIZE=address,undefined
#                   the same against nginx 1.22.1 built with ASan+UBSan
#   NGINX_SRC=/path/to/nginx-x.y.z make
#                   build against any nginx source tree (--with-compat)

SHELL      := /bin/bash
TOP        := $(CURDIR)
BUILD      := $(TOP)/build
MODULE     := $(BUILD)/ngx_voice_module.so
SANITIZE   ?=
NGINX_SRC  ?=
PORT       ?= 5050
PROVE_ARGS ?= -r t/

SOURCES    := config ngx_voice_module.c $(wildcard src/*.c src/*.h)
WARN       := -Wall -Wextra -Werror

ifneq ($(SANITIZE),)
  # An nginx of our own, built from Debian's source package with ASan+UBSan;
  # the module is built into the same tree.
  NGINX_SRC := $(BUILD)/asan/nginx-1.22.1
  MODULE    := $(BUILD)/asan/ngx_voice_module.so
  SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
  export TEST_NGINX_BINARY := $(NGINX_SRC)/objs/nginx
endif

export TEST_NGINX_MODULE := $(MODULE)

.PHONY: all build deps test-deps run test clean

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
	        --with-cc-opt="-g -O2 -fPIC $(WARN)" \
	        --with-ld-opt="-fPIC" \
	        --add-dynamic-module=$(TOP) >$(BUILD)/configure.log 2>&1 || \
	    { tail -20 $(BUILD)/configure.log; exit 1; }
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_voice_module.so $@

else

$(MODULE): $(SOURCES) $(if $(SANITIZE),$(NGINX_SRC)/configure)
	@test ! -x util/check-build-deps || util/check-build-deps --no-nginx-dev
	cd $(NGINX_SRC) && ./configure --with-compat --with-debug \
	        --with-http_ssl_module --with-http_stub_status_module \
	        --with-threads \
	        --with-cc-opt="-g -O1 -fPIC $(SAN_FLAGS) $(if $(SANITIZE),-DNGX_DEBUG_PALLOC=1) $(WARN)" \
	        --with-ld-opt="$(SAN_FLAGS)" \
	        --add-dynamic-module=$(TOP) >$(BUILD)/configure.log 2>&1 || \
	    { tail -20 $(BUILD)/configure.log; exit 1; }
	$(MAKE) -C $(NGINX_SRC) -f objs/Makefile $(if $(SANITIZE),build,modules)
	mkdir -p $(dir $@) && cp $(NGINX_SRC)/objs/ngx_voice_module.so $@

endif

$(BUILD)/asan/nginx-1.22.1/configure:
	util/fetch-nginx-source $(BUILD)/asan

deps:
	@util/install-deps build

test-deps:
	@util/install-deps test

run: deps build
	@util/run-local $(PORT)

test: test-deps
	$(MAKE) build
	prove -I t/lib $(PROVE_ARGS)
	cd twilio && node --test

clean:
	rm -rf $(BUILD) t/servroot*
