/*-------------------------------------------------------------------------
 *
 * main.c
 *	  aggk-mock's entry point: command line flags, the initial fault
 *	  setting, TLS files, starting the daemon, the port file, waiting for
 *	  SIGTERM or SIGINT, and stopping with every allocation freed.
 *
 *-------------------------------------------------------------------------
 */
#include "mock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

mock_config mock_conf = {
	.port = 8089,
	.bind_addr = "127.0.0.1",
	.tier3 = 5,
	.tier4 = 50,
	.seed = 1,
};
pthread_mutex_t mock_lock = PTHREAD_MUTEX_INITIALIZER;
atomic_int mock_stopping;

static const char usage[] =
"Usage: aggk-mock [FLAG]...\n"
"Mock of the AggKnowledge V2 asynchronous person API (see test/mock/README.md).\n"
"\n"
"  --port N               TCP port (default 8089); 0 picks a free one\n"
"  --port-file FILE       write the port actually bound (decimal, newline) to\n"
"                         FILE once listening\n"
"  --bind ADDR            IPv4 address to listen on (default 127.0.0.1)\n"
"  --key-live KEY         API key valid for live; repeatable (default\n"
"                         mock-live-key if no key flag is given)\n"
"  --key-test KEY         API key valid for test; repeatable (default\n"
"                         mock-test-key if no key flag is given)\n"
"  --start-delay-ms N     a new batch stays pending this long (default 0)\n"
"  --items-per-second N   processing speed once started; 0 = all items at\n"
"                         once (default 0)\n"
"  --tier3 N              tier 3 (bulk enrich) requests per second per key,\n"
"                         burst 2*N; 0 = unlimited (default 5)\n"
"  --tier4 N              tier 4 (every other endpoint) requests per second\n"
"                         per key, burst 2*N; 0 = unlimited (default 50)\n"
"  --tls-cert FILE        serve HTTPS with this PEM certificate (needs --tls-key)\n"
"  --tls-key FILE         the PEM private key of --tls-cert\n"
"  --faults JSON          initial fault settings, the object of\n"
"                         POST /__mock/faults (default {})\n"
"  --seed N               seed of the fault-injection random generator\n"
"                         (default 1)\n"
"  --verbose              log one line per request to stderr\n"
"  --help                 print this help and exit\n";

/* bad_usage reports a command line error and exits with status 2. */
static void
bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "aggk-mock: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'aggk-mock --help'.\n");
	exit(2);
}

/* int_flag parses the value of a numeric flag, between 0 and max. */
static int64_t
int_flag(const char *flag, const char *value, int64_t max)
{
	uint64_t	v;

	if (!mock_parse_uint(value, (uint64_t) max, &v))
	{
		fprintf(stderr, "aggk-mock: %s: invalid value \"%s\" (want an integer "
				"from 0 to %lld)\nTry 'aggk-mock --help'.\n",
				flag, value, (long long) max);
		exit(2);
	}
	return (int64_t) v;
}

/* read_file reads a whole (PEM) file into a NUL-terminated string. */
static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	sbuf		b;
	char		chunk[4096];
	size_t		n;

	if (f == NULL)
	{
		fprintf(stderr, "aggk-mock: cannot read %s: %s\n", path, strerror(errno));
		exit(2);
	}
	sbuf_init(&b, 4096);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sbuf_append(&b, chunk, n);
	fclose(f);
	return sbuf_detach(&b, NULL);
}

/* add_key appends a key to a key list. */
static void
add_key(char ***keys, int *n, const char *key)
{
	if (*key == '\0')
		bad_usage("an API key must not be empty%s", "");
	*keys = mock_realloc(*keys, sizeof(char *) * (size_t) (*n + 1));
	(*keys)[(*n)++] = mock_strdup(key);
}

/* set_initial_faults applies --faults, exiting 2 if it is not valid. */
static void
set_initial_faults(const char *text)
{
	char		err[256];
	json_object *obj = mock_parse_json(text, strlen(text), MOCK_JSON_DEPTH,
									   err, sizeof(err));
	mock_faults f;

	if (obj == NULL || !faults_parse(obj, &f, err, sizeof(err)))
	{
		json_object_put(obj);
		fprintf(stderr, "aggk-mock: --faults: %s\nTry 'aggk-mock --help'.\n", err);
		exit(2);
	}
	faults_set_locked(&f, obj);
	json_object_put(obj);
}

/*
 * parse_flags reads the command line into mock_conf.  Flags take their
 * value as the next argument or after '='.
 */
static void
parse_flags(int argc, char **argv, const char **faults_text)
{
	int			i;
	struct in_addr addr;

	for (i = 1; i < argc; i++)
	{
		char	   *arg = argv[i];
		char	   *eq = strchr(arg, '=');
		char		name[64];
		const char *value = NULL;
		bool		takes_value;

		if (strncmp(arg, "--", 2) != 0)
			bad_usage("unexpected argument \"%s\"", arg);
		if (eq && (size_t) (eq - arg) < sizeof(name))
		{
			memcpy(name, arg, (size_t) (eq - arg));
			name[eq - arg] = '\0';
			value = eq + 1;
		}
		else
			snprintf(name, sizeof(name), "%s", arg);

		if (strcmp(name, "--help") == 0 || strcmp(name, "--verbose") == 0)
		{
			if (value)
				bad_usage("%s takes no value", name);
			if (strcmp(name, "--help") == 0)
			{
				fputs(usage, stdout);
				exit(0);
			}
			mock_conf.verbose = true;
			continue;
		}

		takes_value = strcmp(name, "--port") == 0 ||
			strcmp(name, "--port-file") == 0 || strcmp(name, "--bind") == 0 ||
			strcmp(name, "--key-live") == 0 || strcmp(name, "--key-test") == 0 ||
			strcmp(name, "--start-delay-ms") == 0 ||
			strcmp(name, "--items-per-second") == 0 ||
			strcmp(name, "--tier3") == 0 || strcmp(name, "--tier4") == 0 ||
			strcmp(name, "--tls-cert") == 0 || strcmp(name, "--tls-key") == 0 ||
			strcmp(name, "--faults") == 0 || strcmp(name, "--seed") == 0;
		if (!takes_value)
			bad_usage("unknown flag \"%s\"", name);
		if (value == NULL)
		{
			if (i + 1 >= argc)
				bad_usage("%s needs a value", name);
			value = argv[++i];
		}

		if (strcmp(name, "--port") == 0)
			mock_conf.port = (int) int_flag(name, value, 65535);
		else if (strcmp(name, "--port-file") == 0)
			mock_conf.port_file = value;
		else if (strcmp(name, "--bind") == 0)
		{
			if (inet_pton(AF_INET, value, &addr) != 1)
				bad_usage("--bind: \"%s\" is not an IPv4 address", value);
			mock_conf.bind_addr = value;
		}
		else if (strcmp(name, "--key-live") == 0)
			add_key(&mock_conf.live_keys, &mock_conf.n_live_keys, value);
		else if (strcmp(name, "--key-test") == 0)
			add_key(&mock_conf.test_keys, &mock_conf.n_test_keys, value);
		else if (strcmp(name, "--start-delay-ms") == 0)
			mock_conf.start_delay_ms = int_flag(name, value, INT64_C(86400000));
		else if (strcmp(name, "--items-per-second") == 0)
			mock_conf.items_per_second = int_flag(name, value, INT64_C(1000000));
		else if (strcmp(name, "--tier3") == 0)
			mock_conf.tier3 = int_flag(name, value, INT64_C(1000000));
		else if (strcmp(name, "--tier4") == 0)
			mock_conf.tier4 = int_flag(name, value, INT64_C(1000000));
		else if (strcmp(name, "--tls-cert") == 0)
			mock_conf.tls_cert_file = value;
		else if (strcmp(name, "--tls-key") == 0)
			mock_conf.tls_key_file = value;
		else if (strcmp(name, "--faults") == 0)
			*faults_text = value;
		else if (strcmp(name, "--seed") == 0)
			mock_conf.seed = (uint64_t) int_flag(name, value, INT64_MAX);
	}

	if ((mock_conf.tls_cert_file == NULL) != (mock_conf.tls_key_file == NULL))
		bad_usage("--tls-cert and --tls-key go together%s", "");
	if (mock_conf.n_live_keys == 0 && mock_conf.n_test_keys == 0)
	{
		add_key(&mock_conf.live_keys, &mock_conf.n_live_keys, "mock-live-key");
		add_key(&mock_conf.test_keys, &mock_conf.n_test_keys, "mock-test-key");
	}
}

/* write_port_file writes the port via a temporary file and a rename. */
static bool
write_port_file(const char *path, int port)
{
	sbuf		tmp;
	FILE	   *f;
	bool		ok;

	sbuf_init(&tmp, 256);
	sbuf_printf(&tmp, "%s.tmp.%ld", path, (long) getpid());
	f = fopen(tmp.data, "w");
	if (f == NULL)
	{
		fprintf(stderr, "aggk-mock: cannot write %s: %s\n", tmp.data, strerror(errno));
		sbuf_free(&tmp);
		return false;
	}
	fprintf(f, "%d\n", port);
	ok = (fclose(f) == 0);
	if (ok && rename(tmp.data, path) != 0)
	{
		fprintf(stderr, "aggk-mock: cannot rename %s to %s: %s\n",
				tmp.data, path, strerror(errno));
		unlink(tmp.data);
		ok = false;
	}
	sbuf_free(&tmp);
	return ok;
}

/* free_keys releases a key list. */
static void
free_keys(char **keys, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

/*
 * main parses the flags, starts the daemon, announces the port, and serves
 * until SIGTERM or SIGINT; then it stops the daemon (joining every
 * connection thread) and frees all state.
 */
int
main(int argc, char **argv)
{
	const char *faults_text = NULL;
	char	   *cert_pem = NULL;
	char	   *key_pem = NULL;
	struct MHD_Daemon *d;
	sigset_t	stop_signals;
	int			sig;
	int			port;
	int			status = 0;

	parse_flags(argc, argv, &faults_text);
	if (faults_text)
		set_initial_faults(faults_text);
	if (mock_conf.tls_cert_file)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		{
			fprintf(stderr, "aggk-mock: this libmicrohttpd has no TLS support\n");
			exit(2);
		}
		cert_pem = read_file(mock_conf.tls_cert_file);
		key_pem = read_file(mock_conf.tls_key_file);
	}

	/* json-c is probed once, before there are threads to race on it */
	json_ascii_needed();

	/* the daemon's threads inherit this mask; only main waits for them */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	d = http_start(cert_pem, key_pem, &port);
	if (d == NULL)
	{
		fprintf(stderr, "aggk-mock: cannot listen on %s:%d%s\n",
				mock_conf.bind_addr, mock_conf.port,
				cert_pem ? " (or the TLS certificate or key is not valid)" : "");
		status = 1;
		goto done;
	}
	if (mock_conf.port_file && !write_port_file(mock_conf.port_file, port))
	{
		status = 1;
		MHD_stop_daemon(d);
		goto done;
	}
	printf("aggk-mock listening on %s://%s:%d\n", cert_pem ? "https" : "http",
		   mock_conf.bind_addr, port);
	fflush(stdout);

	while (sigwait(&stop_signals, &sig) != 0)
		;
	atomic_store(&mock_stopping, 1);
	MHD_stop_daemon(d);
	if (mock_conf.verbose)
		fprintf(stderr, "aggk-mock: stopped by signal %d\n", sig);

done:
	pthread_mutex_lock(&mock_lock);
	store_reset_locked();
	stats_reset_locked();
	ratelimit_reset_locked();
	faults_reset_locked();
	pthread_mutex_unlock(&mock_lock);
	free_keys(mock_conf.live_keys, mock_conf.n_live_keys);
	free_keys(mock_conf.test_keys, mock_conf.n_test_keys);
	free(cert_pem);
	free(key_pem);
	return status;
}
