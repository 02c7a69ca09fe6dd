package app

import (
	"net"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

type dynamodbPutItemInput = dynamodb.PutItemInput

func listenAny() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func portOf(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }
