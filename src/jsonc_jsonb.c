/*-------------------------------------------------------------------------
 *
 * jsonc_jsonb.c
 *	  Turns a JSON object that json-c parsed (api.c hands back the members of
 *	  items as parts of the parsed page) into jsonb, without writing it out
 *	  as text and parsing it again.
 *
 * api.c has checked that jsonb can store the object (numbers numeric
 * accepts, no \u0000 in strings) before it handed the object back.
 * utils/builtins.h cannot be included here: it declares a function named
 * json_object, which is json-c's type.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <json-c/json.h>

#include "fmgr.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "api.h"

/* json_number_value turns a number, as json-c writes it back, into numeric */
static void
json_number_value(json_object *v, JsonbValue *out)
{
	static FmgrInfo numeric_input;
	static bool numeric_input_ready = false;
	const char *text = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);

	if (!numeric_input_ready)
	{
		fmgr_info_cxt(F_NUMERIC_IN, &numeric_input, TopMemoryContext);
		numeric_input_ready = true;
	}
	out->type = jbvNumeric;
	out->val.numeric = DatumGetNumeric(InputFunctionCall(&numeric_input, (char *) text,
														 InvalidOid, -1));
}

/*
 * push_value adds a json-c value to the jsonb being built, as token
 * (WJB_VALUE in an object, WJB_ELEM in an array); an object or an array
 * returns what its closing push returned (the whole document, at the top)
 */
static JsonbValue *
push_value(JsonbParseState **state, json_object *v, JsonbIteratorToken token)
{
	JsonbValue	scalar;

	switch (json_object_get_type(v))
	{
		case json_type_object:
			pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
			for (struct json_object_iterator it = json_object_iter_begin(v),
				 it_end = json_object_iter_end(v);
				 !json_object_iter_equal(&it, &it_end);
				 json_object_iter_next(&it))
			{
				JsonbValue	key;

				key.type = jbvString;
				key.val.string.val = (char *) json_object_iter_peek_name(&it);
				key.val.string.len = (int) strlen(key.val.string.val);
				pushJsonbValue(state, WJB_KEY, &key);
				push_value(state, json_object_iter_peek_value(&it), WJB_VALUE);
			}
			return pushJsonbValue(state, WJB_END_OBJECT, NULL);
		case json_type_array:
			pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
			for (size_t i = 0; i < json_object_array_length(v); i++)
				push_value(state, json_object_array_get_idx(v, i), WJB_ELEM);
			return pushJsonbValue(state, WJB_END_ARRAY, NULL);
		case json_type_null:
			scalar.type = jbvNull;
			break;
		case json_type_boolean:
			scalar.type = jbvBool;
			scalar.val.boolean = json_object_get_boolean(v) != 0;
			break;
		case json_type_int:
		case json_type_double:
			json_number_value(v, &scalar);
			break;
		case json_type_string:
			scalar.type = jbvString;
			scalar.val.string.val = (char *) json_object_get_string(v);
			scalar.val.string.len = json_object_get_string_len(v);
			break;
	}
	return pushJsonbValue(state, token, &scalar);
}

/*
 * enrich_jsonb_from_json turns a json-c object (NULL: none) into jsonb,
 * palloc'd in the current memory context
 */
Jsonb *
enrich_jsonb_from_json(struct json_object *object)
{
	JsonbParseState *state = NULL;

	if (object == NULL)
		return NULL;
	Assert(json_object_is_type(object, json_type_object));
	return JsonbValueToJsonb(push_value(&state, object, WJB_VALUE));
}
