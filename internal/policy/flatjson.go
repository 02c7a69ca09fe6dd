package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The settings groups (circuit.Settings, circuit.RateSettings,
// HealthCheck) are plain Go structs with time.Duration fields and no
// struct tags, so that each setting is declared once. MarshalFlat and
// UnmarshalFlat give them, and the structs that hold them, their JSON
// form:
//
//   - a field's key is its json tag's name, else its Go name with a
//     lower-case first letter (FailureRateThreshold: "failureRateThreshold");
//   - an embedded struct, or a field tagged `json:",inline"`, is flattened
//     into the enclosing object;
//   - a time.Duration is a Go duration string such as "30s", and must be
//     positive: leave the key out for the default;
//   - zero values are left out when marshalling;
//   - unknown keys and trailing data are errors; null leaves a field as
//     it is.

var durationType = reflect.TypeFor[time.Duration]()

// flatField is one JSON key of a flattened struct.
type flatField struct {
	key   string
	index []int
	typ   reflect.Type
}

// flatFields lists the keys of struct type t, in field order.
func flatFields(t reflect.Type) []flatField {
	var out []flatField
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" && opts == "" {
				continue
			}
			index := append(append([]int(nil), prefix...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType && (f.Anonymous || opts == "inline") {
				walk(f.Type, index)
				continue
			}
			if name == "" {
				r, n := utf8.DecodeRuneInString(f.Name)
				name = string(unicode.ToLower(r)) + f.Name[n:]
			}
			out = append(out, flatField{key: name, index: index, typ: f.Type})
		}
	}
	walk(t, nil)
	return out
}

// FlatKeys lists the JSON keys of struct v (or a pointer to one), in
// field order.
func FlatKeys(v any) []string {
	var keys []string
	for _, f := range flatFields(reflect.Indirect(reflect.ValueOf(v)).Type()) {
		keys = append(keys, f.key)
	}
	return keys
}

// MarshalFlat writes struct v (or a pointer to one) as one flat JSON
// object, as described above.
func MarshalFlat(v any) ([]byte, error) {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if rv.Kind() != reflect.Struct {
		return nil, fmt.Errorf("marshal settings: %T is not a struct", v)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, f := range flatFields(rv.Type()) {
		fv := rv.FieldByIndex(f.index)
		if fv.IsZero() {
			continue
		}
		var val []byte
		var err error
		if f.typ == durationType {
			val, err = json.Marshal(time.Duration(fv.Int()).String())
		} else {
			val, err = json.Marshal(fv.Interface())
		}
		if err != nil {
			return nil, fmt.Errorf("marshal settings: %s: %w", f.key, err)
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		key, _ := json.Marshal(f.key)
		b.Write(key)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalFlat reads one flat JSON object into the struct v points to,
// as described above. Keys are matched exactly; every bad key or value is
// named in the error.
func UnmarshalFlat(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("unmarshal settings: %T is not a pointer to a struct", v)
	}
	rv = rv.Elem()
	byKey := map[string]flatField{}
	for _, f := range flatFields(rv.Type()) {
		byKey[f.key] = f
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("want a JSON object: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, got %v", tok)
	}
	var errs []error
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON object: %w", err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("malformed value of %q: %w", key, err)
		}
		f, ok := byKey[key]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown field %q", key))
			continue
		}
		if string(raw) == "null" {
			continue
		}
		if err := setFlat(rv.FieldByIndex(f.index), f.typ, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("malformed JSON object: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return errors.Join(errs...)
}

// setFlat decodes one value into field fv.
func setFlat(fv reflect.Value, typ reflect.Type, raw json.RawMessage) error {
	if typ != durationType {
		p := reflect.New(typ)
		if err := json.Unmarshal(raw, p.Interface()); err != nil {
			return fmt.Errorf("want a JSON %s, got %s", typ.Kind(), raw)
		}
		fv.Set(p.Elem())
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\", got %s", raw)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration string such as \"30s\": %w", err)
	}
	if d <= 0 {
		return fmt.Errorf("duration %q must be positive; leave the key out for the default", s)
	}
	fv.SetInt(int64(d))
	return nil
}
