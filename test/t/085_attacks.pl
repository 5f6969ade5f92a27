# The attacker.  A role, app, with nothing but the README's grant block,
# its own schema and tables, CREATE on public (as an upgraded cluster
# grants) and the ownership of the database (so it chooses the database's
# search_path, and may create a schema named after the workers' user):
#  - plants look-alike operators and functions in its schema (first in the
#    database's search_path, before pg_catalog), in public and in the
#    workers' "$user" schema, each of which logs who ran it and tries to
#    make app a superuser;
#  - calls enrich's API functions, queues requests, watches tables whose
#    triggers, CHECKs, key domains and index expressions change settings
#    with set_config or sleep, calls every internal function directly with hostile
#    arguments, races a rename against a backfill, and holds every advisory
#    lock it can compute;
# while another role, bob, with the same grants, watches a table of his own.
# Afterwards no planted code ran as any role but app, app is no superuser,
# no setting leaked into a worker, and bob's requests all finished.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../perl";

use EnrichMock;
use EnrichNode;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $mock = EnrichMock->start();
my $node = EnrichNode->create('attacks', $mock, q{
enrich.poll_interval_min = '20ms'
enrich.write_back_timeout = '2s'
});

# the README's grant block, as written, for a role
my ($grants) = slurp_file("$FindBin::Bin/../../README.md")
  =~ /Grants for an application role.*?```sql\n(.*?)```/s
  or BAIL_OUT('README.md has no grant block');
sub grants_for
{
	my ($role) = @_;
	(my $g = $grants) =~ s/\bTO app;/TO $role;/g;
	return $g;
}

# the test's own queries run as a superuser whose search_path is its own,
# so that no planted code runs in them
$node->safe_psql('postgres', q{
	CREATE ROLE tester SUPERUSER LOGIN;
	ALTER ROLE tester SET search_path = pg_catalog;
});
$ENV{PGUSER} = 'tester';
sub sql { return $node->safe_psql('postgres', $_[0]) }
sub as
{
	my ($role, $query) = @_;
	return $node->safe_psql('postgres', $query, extra_params => [ '-U', $role ]);
}
sub as_err
{
	my ($role, $query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $query, extra_params => [ '-U', $role ]);
	return $err;
}

sql('SET search_path = public, pg_catalog; CREATE ROLE app LOGIN; CREATE ROLE bob LOGIN;' . grants_for('app') . grants_for('bob') . q{
	GRANT CREATE ON SCHEMA public TO app;
	ALTER DATABASE postgres OWNER TO app;
	CREATE SCHEMA bob AUTHORIZATION bob;
	-- bob's own sessions do not take the database's search_path
	ALTER ROLE bob SET search_path = pg_catalog, bob;
});

# the plants: every operator and function enrich's statements use, in
# evil (first in the search path), public and the workers' "$user" schema
my $superuser = sql('SELECT rolname FROM pg_roles WHERE oid = 10');
as('app', qq{
	CREATE SCHEMA evil;
	CREATE SCHEMA "$superuser";
	GRANT USAGE ON SCHEMA evil, "$superuser" TO PUBLIC;
	CREATE FUNCTION evil.note(what text) RETURNS void LANGUAGE plpgsql AS \$\$
	BEGIN
		RAISE LOG 'planted % ran as % (session user %, %)', what, current_user, session_user,
			(SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
			 WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid());
		IF current_user OPERATOR(pg_catalog.<>) 'app' THEN
			BEGIN
				EXECUTE 'ALTER ROLE app SUPERUSER';
			EXCEPTION WHEN OTHERS THEN NULL;
			END;
		END IF;
	END \$\$;
} . q{
	DO $do$
	DECLARE
		s text;
		o record;
		rt text;
		fn text;
		i int := 0;
	BEGIN
		FOREACH s IN ARRAY ARRAY['evil', 'public', current_setting('evil.superuser')] LOOP
			FOR o IN SELECT * FROM (VALUES
				('=', 'text', 'text'), ('=', 'varchar', 'varchar'), ('=', 'bpchar', 'bpchar'),
				('=', 'bigint', 'bigint'), ('=', 'integer', 'integer'), ('=', 'oid', 'oid'),
				('=', 'jsonb', 'jsonb'), ('=', 'name', 'name'), ('=', 'name', 'text'),
				('=', 'boolean', 'boolean'), ('=', 'timestamptz', 'timestamptz'),
				('<>', 'text', 'text'), ('<>', 'jsonb', 'jsonb'), ('<>', 'name', 'text'),
				('<>', 'bigint', 'bigint'), ('>=', 'timestamptz', 'timestamptz'),
				('<', 'timestamptz', 'timestamptz'), ('<=', 'timestamptz', 'timestamptz'),
				('<', 'integer', 'integer'), ('>=', 'integer', 'integer'), ('>', 'bigint', 'bigint'),
				('*', 'integer', 'interval'), ('*', 'double precision', 'interval'),
				('*', 'interval', 'double precision'), ('*', 'numeric', 'integer'),
				('*', 'double precision', 'double precision'),
				('+', 'timestamptz', 'interval'), ('+', 'integer', 'integer'), ('+', 'bigint', 'bigint'),
				('+', 'bigint', 'numeric'),
				('-', 'timestamptz', 'timestamptz'), ('-', 'timestamptz', 'interval'),
				('-', 'integer', 'integer'), ('-', 'bigint', 'integer'),
				('/', 'interval', 'double precision'), ('/', 'bigint', 'integer'),
				('&', 'integer', 'integer'), ('->>', 'jsonb', 'integer'), ('->>', 'jsonb', 'text'),
				('||', 'text', 'text'), ('=', '"char"', '"char"'), ('=', 'regclass', 'oid'),
				('=', 'date', 'date'), ('>=', 'date', 'date'), ('+', 'date', 'integer'),
				('+', 'timestamp', 'interval'), ('>', 'timestamptz', 'timestamptz'),
				('>=', 'interval', 'interval'), ('=', 'interval', 'interval'),
				('<', 'interval', 'interval')) AS v(op, l, r)
			LOOP
				i := i + 1;
				EXECUTE format('SELECT pg_typeof(NULL::%s OPERATOR(pg_catalog.%s) NULL::%s)::text',
							   o.l, o.op, o.r) INTO rt;
				fn := format('%I.planted_%s', s, i);
				EXECUTE format('CREATE FUNCTION %s(a %s, b %s) RETURNS %s LANGUAGE plpgsql AS '
							   '$f$ BEGIN PERFORM evil.note(%L); RETURN a OPERATOR(pg_catalog.%s) b; END $f$',
							   fn, o.l, o.r, rt, format('%s.%s(%s, %s)', s, o.op, o.l, o.r), o.op);
				EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s)',
							   s, o.op, o.l, o.r, fn);
			END LOOP;
		END LOOP;
		-- functions: first in the search path, they win over pg_catalog's
		FOR o IN SELECT * FROM (VALUES
			('now', '', 'timestamptz', 'pg_catalog.now()'),
			('clock_timestamp', '', 'timestamptz', 'pg_catalog.clock_timestamp()'),
			('random', '', 'double precision', 'pg_catalog.random()'),
			('pg_backend_pid', '', 'integer', 'pg_catalog.pg_backend_pid()'),
			('hashtext', 'a text', 'integer', 'pg_catalog.hashtext(a)'),
			('current_setting', 'a text', 'text', 'pg_catalog.current_setting(a)'),
			('cardinality', 'a text[]', 'integer', 'pg_catalog.cardinality(a)'),
			('power', 'a double precision, b double precision', 'double precision', 'pg_catalog.power(a, b)'),
			('mod', 'a integer, b integer', 'integer', 'pg_catalog.mod(a, b)'),
			('ceil', 'a numeric', 'numeric', 'pg_catalog.ceil(a)'),
			('to_char', 'a timestamp, b text', 'text', 'pg_catalog.to_char(a, b)'),
			('nextval', 'a text', 'bigint', 'pg_catalog.nextval(a)'),
			('pg_get_serial_sequence', 'a text, b text', 'text', 'pg_catalog.pg_get_serial_sequence(a, b)'),
			('timezone', 'a text, b timestamptz', 'timestamp', 'pg_catalog.timezone(a, b)'),
			('date_trunc', 'a text, b timestamptz, c text', 'timestamptz', 'pg_catalog.date_trunc(a, b, c)'))
			AS v(name, args, rettype, body)
		LOOP
			EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS '
						   '$f$ BEGIN PERFORM evil.note(%L); RETURN %s; END $f$',
						   o.name, o.args, o.rettype, 'evil.' || o.name || '(' || o.args || ')', o.body);
		END LOOP;
		CREATE FUNCTION evil.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS
			$f$ BEGIN PERFORM evil.note('evil.unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
		CREATE FUNCTION evil.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS
			$f$ BEGIN PERFORM evil.note('evil.unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $f$;
	END
	$do$;
} =~ s/current_setting\('evil.superuser'\)/'$superuser'/r);

# the database's search_path puts the plants first: app owns the database
as('app', qq{ALTER DATABASE postgres SET search_path = evil, pg_catalog, public, "$superuser"});
# the workers start again and take the database's settings
$node->restart;

# app holds every advisory lock key it can compute from enrich's tables
my $locks = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
$locks->query_safe(q{
	SELECT pg_catalog.pg_advisory_lock(c.oid::bigint),
		pg_catalog.pg_advisory_lock(c.oid::int4, e), pg_catalog.pg_advisory_lock(c.oid::int4, e + 100)
	FROM pg_catalog.pg_class c, pg_catalog.generate_series(0, 3) AS e
	WHERE c.relnamespace OPERATOR(pg_catalog.=) 'enrich'::regnamespace});

# a budget: enrich_submit and every claim of the workers read it, and
# write the ledger, as the bootstrap superuser
sql(q{SELECT public.enrich_set_budget('test', 1000000, 2000000)});

# ad hoc calls as app: each looks up the key as the bootstrap superuser
my $batch = as('app', q{SELECT enrich_submit('[{"personId": "p-app-1"}, {"personId": "p-app-2"}]')});
like($batch, qr/^bat_/, 'app sends a bulk enrich');
$node->poll_query_until('postgres', qq{SELECT status = 'completed' FROM public.enrich_status('$batch')})
  or die 'the batch did not complete';
is(as('app', qq{SELECT count(*) FROM enrich_items('$batch')}), 2, 'app reads its items');
my $item = as('app', qq{SELECT item_id FROM enrich_items('$batch') LIMIT 1});
like(as('app', qq{SELECT (enrich_item('$batch', '$item')).item_id}), qr/^itm_/, 'app reads one item');
ok(as('app', q{SELECT count(*) FROM enrich_batches(NULL, 10)}) >= 1, 'app lists batches');
like(as_err('app', q{SELECT enrich_status('bat_unknown')}), qr/permission denied for batch "bat_unknown"/,
	'a batch app did not submit is refused, as another role\'s would be');

# the queue as app: duplicates, a retry, a person not found
as('app', q{INSERT INTO enrich.requests (person_id) VALUES
	('p-app-3'), ('p-app-dup'), ('p-app-dup'), ('p-flaky-app'), ('p-notfound-app')});

# app's watched tables: settings changed by triggers, a CHECK and an index
# expression while the worker writes, a trigger that sleeps, and one that
# changes nothing
as('app', q{
	CREATE FUNCTION evil.leak(what text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_catalog.set_config('search_path', 'evil, pg_catalog', false);
		PERFORM pg_catalog.set_config('application_name', 'leaked by ' || what, false);
		PERFORM pg_catalog.set_config('default_transaction_read_only', 'on', false);
		PERFORM pg_catalog.set_config('datestyle', 'SQL, DMY', false);
		PERFORM pg_catalog.set_config('lock_timeout', '1ms', false);
		RETURN true;
	END $$;
	CREATE FUNCTION evil.leak_index(p jsonb) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
	BEGIN RETURN evil.leak('an index expression'); END $$;
	CREATE FUNCTION evil.leak_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.leak('a trigger'); RETURN NEW; END $$;
	CREATE TABLE evil.leads (id int PRIMARY KEY, url text, person jsonb
		CHECK (evil.leak('a check constraint')));
	CREATE INDEX ON evil.leads (evil.leak_index(person));
	CREATE TRIGGER leak BEFORE UPDATE ON evil.leads FOR EACH ROW EXECUTE FUNCTION evil.leak_trigger();
	CREATE TRIGGER leak_after AFTER UPDATE ON evil.leads FOR EACH STATEMENT EXECUTE FUNCTION evil.leak_trigger();
	SELECT enrich_watch('evil.leads', 'person', linkedin_url_column => 'url');

	CREATE FUNCTION evil.sleep_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN PERFORM pg_catalog.pg_sleep(3600); RETURN NEW; END $$;
	CREATE TABLE evil.slow (id int PRIMARY KEY, url text, person jsonb);
	CREATE TRIGGER slow BEFORE UPDATE ON evil.slow FOR EACH ROW EXECUTE FUNCTION evil.sleep_trigger();
	SELECT enrich_watch('evil.slow', 'person', linkedin_url_column => 'url');
	INSERT INTO evil.slow VALUES (1, 'https://www.linkedin.com/in/slow-1', NULL);
	-- a primary key of a domain whose CHECK changes settings: the
	-- write-back casts each key to it
	CREATE FUNCTION evil.leak_domain(v int) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN RETURN evil.leak('a domain'); END $$;
	CREATE DOMAIN evil.lead_id AS int CHECK (evil.leak_domain(VALUE));
	-- and a column the person's job title is mapped to, of a domain whose
	-- CHECK runs planted code: the worker casts each value to it
	CREATE FUNCTION evil.noted(v text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.note('a mapped column''s domain'); RETURN true; END $$;
	CREATE DOMAIN evil.title AS text CHECK (evil.noted(VALUE));
	CREATE TABLE evil.domained (id evil.lead_id PRIMARY KEY, url text, person jsonb, title evil.title);
	SELECT enrich_watch('evil.domained', 'person', linkedin_url_column => 'url',
	                    columns => '{"title": "$.jobTitle"}');
});
# each in a session of its own: their CHECKs change the session's settings too
as('app', q{INSERT INTO evil.domained SELECT g, 'https://www.linkedin.com/in/domained-' || g, NULL
	FROM generate_series(1, 5) g});
as('app', q{INSERT INTO evil.leads SELECT g, 'https://www.linkedin.com/in/lead-' || g, NULL
	FROM generate_series(1, 60) g});

# bob's table, keyed by varchar (planted: =(varchar, varchar)), and a backfill
as('bob', q{
	CREATE TABLE bob.contacts (id varchar(20) PRIMARY KEY, url text, person jsonb);
	INSERT INTO bob.contacts SELECT 'c-' || g, 'https://www.linkedin.com/in/bob-' || g, NULL
	FROM generate_series(1, 40) g;
	SELECT public.enrich_watch('bob.contacts', 'person', linkedin_url_column => 'url', backfill => true);
	INSERT INTO bob.contacts SELECT 'c-' || g, 'https://www.linkedin.com/in/bob-' || g, NULL
	FROM generate_series(41, 80) g;
	UPDATE bob.contacts SET url = 'https://www.linkedin.com/in/bob-moved-1' WHERE id = 'c-1';
});
$node->wait_for(q{SELECT count(*) = 80 FROM bob.contacts WHERE person IS NOT NULL},
	"bob's contacts are all enriched while app holds its advisory locks");
$node->wait_for(q{SELECT count(*) = 60 FROM evil.leads WHERE person IS NOT NULL},
	"app's hostile table is written back");
$node->wait_for(q{SELECT count(*) = 5 FROM evil.domained WHERE person IS NOT NULL},
	"app's table keyed by a hostile domain is written back");
is(sql(q{SELECT count(*) FROM evil.domained WHERE title = person->>'jobTitle'}), 5,
	'with the job title cast to its hostile domain');
ok($node->log_contains(qr/planted a mapped column's domain ran as app /),
	"the domain's CHECK ran, as app");
$node->wait_for(q{SELECT state = 'done' FROM enrich.requests WHERE linkedin_url LIKE '%slow-1'},
	'the request of the row whose trigger sleeps is done');
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'every request is final');
ok($node->log_contains(qr/could not write 1 persons back to table evil\.slow: canceling statement due to statement timeout/),
	'the sleeping trigger was stopped by enrich.write_back_timeout, and logged');
is(sql(q{SELECT person IS NULL FROM evil.slow}), 't', 'that person is kept in enrich.requests only');

# refreshes: bob's rows on a schedule, app's by hand.  The rows due are
# read as each table's owner (bob's key through the planted =(varchar,
# varchar)) and queued as the bootstrap superuser.
as('bob', q{SELECT public.enrich_alter_watch('bob.contacts', '1 hour')});
as('app', q{SELECT enrich_alter_watch('evil.leads', '1 hour')});
sql(q{UPDATE enrich.enriched_rows SET answered_at = answered_at - interval '2 hours',
	refresh_from = refresh_from - interval '2 hours'});
$node->wait_for(q{SELECT count(*) > 0 FROM enrich.requests WHERE owner = 'bob' AND max_age IS NOT NULL},
	"the first worker queues a refresh of bob's rows");
ok(as('app', q{SELECT enrich_refresh('evil.leads', '1 hour')}) > 0, "app refreshes its rows by hand");
is($node->sqlstate_of('postgres', 'app', q{SELECT enrich_refresh('bob.contacts')}), '42501',
	"but not bob's");
$node->wait_for(q{SELECT count(*) = 0 FROM enrich.requests WHERE state NOT IN ('done', 'failed')},
	'the refreshes are final');

# after the hostile write-backs, the workers still write, and for bob
as('bob', q{INSERT INTO bob.contacts VALUES ('c-after', 'https://www.linkedin.com/in/bob-after', NULL)});
$node->wait_for(q{SELECT person IS NOT NULL FROM bob.contacts WHERE id = 'c-after'},
	'a later contact of bob is written back: no setting leaked (not read-only)');
is(sql(q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'enrich worker' AND application_name LIKE 'leaked%'}), 0,
	'no worker took the application_name a trigger set');

# the rename race: a backfill of a table renamed, and replaced by a view
# that calls planted code, while the backfill waits for its lock
as('app', q{
	CREATE FUNCTION evil.grab() RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.note('the view that replaced a table'); RETURN true; END $$;
	CREATE TABLE evil.race (id int PRIMARY KEY, url text, person jsonb);
	INSERT INTO evil.race SELECT g, 'https://www.linkedin.com/in/race-' || g, NULL FROM generate_series(1, 5) g;
	SELECT enrich_watch('evil.race', 'person', linkedin_url_column => 'url');
});
my $renamer = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
$renamer->query_safe(q{BEGIN; ALTER TABLE evil.race RENAME TO race_old;
	CREATE VIEW evil.race AS SELECT * FROM evil.race_old r WHERE evil.grab()});
my $backfill = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
# (its NOTICE of what the backfill costs would fail the next query_safe)
$backfill->query_until(qr/started/,
	qq{SET client_min_messages = warning;\n\\echo started\nSELECT enrich.enqueue_existing('evil.race') AS backfilled;\n});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE NOT l.granted AND a.usename = 'app'}) or die 'the backfill did not wait';
$renamer->query_safe('COMMIT');
$renamer->quit;
my $backfilled = $backfill->query_safe('SELECT 1');
$backfill->quit;
$node->wait_for(q{SELECT count(*) = 5 FROM evil.race_old WHERE person IS NOT NULL},
	'the backfill read the table it locked, renamed meanwhile, and its rows are written back');

# the internal functions, called directly with hostile arguments
my $bob_table = sql(q{SELECT 'bob.contacts'::regclass::oid});
my $requests_table = sql(q{SELECT 'enrich.requests'::regclass::oid});
as('app', q{
	CREATE TABLE evil.injected (n int);
	GRANT INSERT ON evil.injected TO PUBLIC;
	CREATE TABLE evil.inj (id int PRIMARY KEY, url text, person jsonb);
	INSERT INTO evil.inj VALUES (1, 'https://www.linkedin.com/in/inj-1', NULL);
	SELECT enrich.register_watch('evil.inj', 'person', 'url', NULL, NULL, NULL,
		'{id}', ARRAY['integer; INSERT INTO evil.injected VALUES (1); --']);
	SELECT enrich.enqueue_existing('evil.inj');
});
is(sql(q{SELECT key_types::text FROM enrich.watches WHERE source = 'evil.inj'::regclass}), '{integer}',
	'register_watch records the key types of the primary key, not the ones given');
$node->wait_for(q{SELECT person IS NOT NULL FROM evil.inj WHERE id = 1},
	'the row of a watch registered directly is written back');
is(sql('SELECT count(*) FROM evil.injected'), 0, 'nothing pasted into the write-back ran');

my %refusals = (
	"SELECT enrich.register_watch($bob_table, 'person', 'url', NULL, NULL, NULL, '{id}', '{text}')"
	  => qr/must be owner of table bob\.contacts/,
	"SELECT enrich.register_watch($requests_table, 'person', 'linkedin_url', NULL, NULL, NULL, NULL, NULL)"
	  => qr/must be owner of table enrich\.requests/,
	"SELECT enrich.register_watch(NULL, 'person', 'url', NULL, NULL, NULL, NULL, NULL)"
	  => qr/must not be null/,
	"SELECT enrich.register_watch('evil.inj', 'person', NULL, NULL, NULL, NULL, NULL, NULL)"
	  => qr/at least one identifier column is required/,
	"SELECT enrich.register_watch('evil.inj', 'person', 'url', NULL, NULL, 'x'';DROP', NULL, NULL)"
	  => qr/invalid environment/,
	"SELECT enrich.register_watch('evil.inj', 'person\"; DROP TABLE x; --', 'url', NULL, NULL, NULL, NULL, NULL)"
	  => qr/does not exist/,
	"SELECT enrich.enqueue_existing($bob_table)" => qr/must be owner of table bob\.contacts/,
	"SELECT enrich.enqueue_existing($requests_table)" => qr/must be owner of table enrich\.requests/,
	"SELECT enrich.enqueue_existing(4294967295)" => qr/does not exist/,
	"SELECT enrich.unregister_watch($bob_table)" => qr/must be owner of table bob\.contacts/,
	"SELECT enrich.enqueue_from_source()" => qr/must be fired AFTER INSERT or AFTER UPDATE/,
	"SELECT enrich.worker_state('live'';--')" => qr/invalid environment/,
	"SELECT * FROM enrich.items_stream('bat_x', 'test', 0)" => qr/page_size must be between/,
	"SELECT enrich.flush_intake()" => qr/permission denied for function flush_intake/,
	"SELECT enrich.request_problem('x', NULL, NULL, NULL)" => qr/permission denied for function request_problem/,
	"SELECT enrich.normalize_identifier('x', NULL, NULL)" => qr/permission denied for function normalize_identifier/,
	"CREATE TRIGGER t BEFORE INSERT ON evil.inj FOR EACH ROW EXECUTE FUNCTION enrich.requests_check()"
	  => qr/permission denied for function enrich.requests_check/,
	"SELECT enrich_set_api_key('test', 'stolen')" => qr/permission denied for function enrich_set_api_key/,
	"SELECT api_key FROM enrich.api_keys" => qr/permission denied for table api_keys/,
	"UPDATE enrich.requests SET state = 'queued'" => qr/permission denied for table requests/,
	"INSERT INTO enrich.requests (person_id, source_relid, source_key) VALUES ('p-x', $bob_table, '[\"c-2\"]')"
	  => qr/permission denied for table requests/,
);
for my $call (sort keys %refusals)
{
	like(as_err('app', $call), $refusals{$call}, "refused: $call");
}
is(sql(q{SELECT count(*) FROM enrich.watches WHERE source_name LIKE 'bob.%'}), 1, "bob's watch is still there");

# a partitioned table of app's, watched, that gets a partition afterwards:
# the event trigger asks which partitions belong to watched tables among
# the plants, and the partition's rows are app's table's
as('app', q{
	CREATE TABLE evil.parts (id int, region text, url text, person jsonb, PRIMARY KEY (id, region))
		PARTITION BY LIST (region);
	SELECT enrich_watch('evil.parts', 'person', linkedin_url_column => 'url');
	CREATE TABLE evil.parts_eu PARTITION OF evil.parts FOR VALUES IN ('eu');
	INSERT INTO evil.parts_eu VALUES (1, 'eu', 'linkedin.com/in/attack-partition')});
$node->wait_for(q{SELECT person IS NOT NULL FROM evil.parts WHERE id = 1},
	'a row app inserts straight into a partition it made later is enriched');

# the rest of what the grant block grants works for app
is(as('app', q{SELECT count(*) FROM enrich.progress}), 2, 'app reads enrich.progress');
# the counting triggers ran on each of app's and the workers' statements
# on enrich.requests, as enrich, through the plants
is($node->count_mismatches, 0, 'the counters of enrich.progress agree with enrich.requests');
is(as('app', q{SELECT done_today FROM enrich.progress WHERE environment = 'test'}),
	sql(q{SELECT count(*) FROM enrich.requests WHERE owner = 'app' AND state = 'done'
		AND (completed_at AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date}),
	'and app reads its own done today');
ok(as('app', q{SELECT count(*) FROM enrich.batches}) >= 1, 'app reads enrich.batches');
ok(as('app', q{SELECT count(*) FROM enrich.requests}) >= 1, 'app reads enrich.requests');
as('app', q{SELECT enrich_wake()});
is(as('app', q{SELECT enrich_unwatch('evil.slow')}), 't', 'app unwatches its table');

# the verdict
$locks->quit;
my @planted = grep { /LOG:  planted .* ran as / } split /\n/, slurp_file($node->logfile);
ok(@planted > 0, "the plants are in the path: app's own statements ran them (" . scalar(@planted) . ' times)');
# app's code running as app is no borrowed privilege, even in a worker
# (the write-back into app's own table, whose trigger set its search_path)
my @borrowed = grep { !/ ran as app \(session user \S+, [^)]*\)$/ } @planted;
is(scalar(@borrowed), 0, 'no planted code ran as any other role')
  or diag(join("\n", @borrowed[0 .. ($#borrowed < 9 ? $#borrowed : 9)]));
is(sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'app'}), 'f', 'app is no superuser');
is(sql(q{SELECT count(*) FROM bob.contacts WHERE person IS NULL}), 0, "bob's contacts all have their person");

$node->stop;
$mock->stop;
done_testing();
