package store

import (
	"errors"

	"github.com/aws/smithy-go"
)

// permanentCodes are DynamoDB error codes that repeating the same request
// cannot fix: the caller lacks the permission, the request is invalid, or
// the table does not exist.
var permanentCodes = map[string]bool{
	"AccessDeniedException":     true,
	"ValidationException":       true,
	"ResourceNotFoundException": true,
}

// Permanent reports whether err is a DynamoDB refusal that a retry of the
// same request cannot turn into a success (access denied, validation
// error, missing table). Throttling, timeouts and network errors are not
// permanent.
func Permanent(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && permanentCodes[ae.ErrorCode()]
}
