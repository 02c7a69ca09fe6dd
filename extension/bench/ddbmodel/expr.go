package ddbmodel

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The expression subset the store writes: conditions built from
// comparisons, attribute_exists and attribute_not_exists joined by AND,
// OR, NOT and parentheses; updates with SET (a value or
// if_not_exists(path, value)), REMOVE and ADD (numbers).

type tokens struct {
	s   []string
	pos int
}

func tokenize(s string) *tokens {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')' || c == ',' || c == '=' || c == '+' || c == '-':
			out = append(out, string(c))
			i++
		case c == '<' || c == '>':
			if i+1 < len(s) && (s[i+1] == '=' || (c == '<' && s[i+1] == '>')) {
				out = append(out, s[i:i+2])
				i += 2
			} else {
				out = append(out, string(c))
				i++
			}
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n(),=<>+-", rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return &tokens{s: out}
}

func (t *tokens) peek() string {
	if t.pos < len(t.s) {
		return t.s[t.pos]
	}
	return ""
}

func (t *tokens) next() string {
	p := t.peek()
	t.pos++
	return p
}

func (t *tokens) expect(s string) error {
	if got := t.next(); got != s {
		return fmt.Errorf("ddbmodel: expected %q, got %q", s, got)
	}
	return nil
}

// env resolves placeholders against an item.
type env struct {
	names  map[string]string
	values map[string]types.AttributeValue
	item   map[string]types.AttributeValue
}

func (e env) name(tok string) (string, error) {
	if strings.HasPrefix(tok, "#") {
		n, ok := e.names[tok]
		if !ok {
			return "", fmt.Errorf("ddbmodel: unknown name %s", tok)
		}
		return n, nil
	}
	if tok == "" || strings.HasPrefix(tok, ":") {
		return "", fmt.Errorf("ddbmodel: expected an attribute, got %q", tok)
	}
	return tok, nil
}

func (e env) operand(tok string) (types.AttributeValue, error) {
	if strings.HasPrefix(tok, ":") {
		v, ok := e.values[tok]
		if !ok {
			return nil, fmt.Errorf("ddbmodel: unknown value %s", tok)
		}
		return v, nil
	}
	n, err := e.name(tok)
	if err != nil {
		return nil, err
	}
	return e.item[n], nil
}

// evalCondition evaluates a condition expression on item (nil: absent).
func evalCondition(cond string, e env) (bool, error) {
	if strings.TrimSpace(cond) == "" {
		return true, nil
	}
	t := tokenize(cond)
	ok, err := orExpr(t, e)
	if err != nil {
		return false, err
	}
	if t.peek() != "" {
		return false, fmt.Errorf("ddbmodel: trailing %q in condition", t.peek())
	}
	return ok, nil
}

func orExpr(t *tokens, e env) (bool, error) {
	v, err := andExpr(t, e)
	if err != nil {
		return false, err
	}
	for strings.EqualFold(t.peek(), "OR") {
		t.next()
		w, err := andExpr(t, e)
		if err != nil {
			return false, err
		}
		v = v || w
	}
	return v, nil
}

func andExpr(t *tokens, e env) (bool, error) {
	v, err := factor(t, e)
	if err != nil {
		return false, err
	}
	for strings.EqualFold(t.peek(), "AND") {
		t.next()
		w, err := factor(t, e)
		if err != nil {
			return false, err
		}
		v = v && w
	}
	return v, nil
}

func factor(t *tokens, e env) (bool, error) {
	switch tok := t.next(); {
	case tok == "(":
		v, err := orExpr(t, e)
		if err != nil {
			return false, err
		}
		return v, t.expect(")")
	case strings.EqualFold(tok, "NOT"):
		v, err := factor(t, e)
		return !v, err
	case tok == "attribute_exists" || tok == "attribute_not_exists":
		if err := t.expect("("); err != nil {
			return false, err
		}
		n, err := e.name(t.next())
		if err != nil {
			return false, err
		}
		if err := t.expect(")"); err != nil {
			return false, err
		}
		_, has := e.item[n]
		return has == (tok == "attribute_exists"), nil
	default:
		a, err := e.operand(tok)
		if err != nil {
			return false, err
		}
		op := t.next()
		b, err := e.operand(t.next())
		if err != nil {
			return false, err
		}
		return compare(a, op, b)
	}
}

// compare compares two values; a missing operand makes every comparison
// false, as in DynamoDB.
func compare(a types.AttributeValue, op string, b types.AttributeValue) (bool, error) {
	if a == nil || b == nil {
		return false, nil
	}
	var c int
	switch x := a.(type) {
	case *types.AttributeValueMemberN:
		y, ok := b.(*types.AttributeValueMemberN)
		if !ok {
			return op == "<>", nil
		}
		c = num(x.Value).Cmp(num(y.Value))
	case *types.AttributeValueMemberS:
		y, ok := b.(*types.AttributeValueMemberS)
		if !ok {
			return op == "<>", nil
		}
		c = strings.Compare(x.Value, y.Value)
	case *types.AttributeValueMemberBOOL:
		y, ok := b.(*types.AttributeValueMemberBOOL)
		if !ok || (op != "=" && op != "<>") {
			return op == "<>", nil
		}
		if x.Value == y.Value {
			c = 0
		} else {
			c = 1
		}
	default:
		return false, fmt.Errorf("ddbmodel: cannot compare %T", a)
	}
	switch op {
	case "=":
		return c == 0, nil
	case "<>":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("ddbmodel: unknown comparison %q", op)
}

func num(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return new(big.Rat)
	}
	return r
}

// applyUpdate applies an update expression to item (modified in place)
// and returns the names of the attributes it set, added to or removed.
func applyUpdate(update string, e env, item map[string]types.AttributeValue) (touched []string, err error) {
	defer func() {
		if err != nil {
			touched = nil
		}
	}()
	t := tokenize(update)
	for t.peek() != "" {
		switch section := strings.ToUpper(t.next()); section {
		case "SET":
			for {
				n, err := e.name(t.next())
				if err != nil {
					return nil, err
				}
				if err := t.expect("="); err != nil {
					return nil, err
				}
				v, err := setValue(t, e)
				if err != nil {
					return nil, err
				}
				item[n] = v
				touched = append(touched, n)
				if t.peek() != "," {
					break
				}
				t.next()
			}
		case "REMOVE":
			for {
				n, err := e.name(t.next())
				if err != nil {
					return nil, err
				}
				delete(item, n)
				touched = append(touched, n)
				if t.peek() != "," {
					break
				}
				t.next()
			}
		case "ADD":
			for {
				n, err := e.name(t.next())
				if err != nil {
					return nil, err
				}
				v, err := e.operand(t.next())
				if err != nil {
					return nil, err
				}
				d, ok := v.(*types.AttributeValueMemberN)
				if !ok {
					return nil, fmt.Errorf("ddbmodel: ADD of %T", v)
				}
				sum := num(d.Value)
				if cur, ok := item[n].(*types.AttributeValueMemberN); ok {
					sum.Add(sum, num(cur.Value))
				}
				item[n] = &types.AttributeValueMemberN{Value: sum.RatString()}
				touched = append(touched, n)
				if t.peek() != "," {
					break
				}
				t.next()
			}
		default:
			return nil, fmt.Errorf("ddbmodel: unknown update section %q", section)
		}
	}
	return touched, nil
}

func setValue(t *tokens, e env) (types.AttributeValue, error) {
	tok := t.next()
	if tok == "if_not_exists" {
		if err := t.expect("("); err != nil {
			return nil, err
		}
		n, err := e.name(t.next())
		if err != nil {
			return nil, err
		}
		if err := t.expect(","); err != nil {
			return nil, err
		}
		v, err := e.operand(t.next())
		if err != nil {
			return nil, err
		}
		if err := t.expect(")"); err != nil {
			return nil, err
		}
		if cur, ok := e.item[n]; ok {
			return cur, nil
		}
		return v, nil
	}
	return e.operand(tok)
}
