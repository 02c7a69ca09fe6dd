package inflight

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, c *Counter)
	}{
		{"idle counter waits for nothing", func(t *testing.T, c *Counter) {
			if err := c.Wait(context.Background()); err != nil {
				t.Fatalf("Wait = %v", err)
			}
		}},
		{"wait ends when the work leaves", func(t *testing.T, c *Counter) {
			if !c.Enter() {
				t.Fatal("Enter refused before Close")
			}
			left := make(chan struct{})
			go func() {
				time.Sleep(20 * time.Millisecond)
				close(left)
				c.Leave()
			}()
			if err := c.Wait(context.Background()); err != nil {
				t.Fatalf("Wait = %v", err)
			}
			select {
			case <-left:
			default:
				t.Fatal("Wait returned before the work left")
			}
		}},
		{"wait ends with its context", func(t *testing.T, c *Counter) {
			c.Enter()
			defer c.Leave()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait = %v, want the deadline", err)
			}
		}},
		{"close refuses Enter but not Go", func(t *testing.T, c *Counter) {
			c.Close()
			if c.Enter() {
				t.Fatal("Enter accepted after Close")
			}
			ran := make(chan struct{})
			release := make(chan struct{})
			c.Go(func() { close(ran); <-release })
			<-ran
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if err := c.Wait(ctx); err == nil {
				t.Fatal("Wait returned while Go's work ran")
			}
			close(release)
			if err := c.Wait(context.Background()); err != nil {
				t.Fatalf("Wait = %v", err)
			}
		}},
		{"counter is reusable after idle", func(t *testing.T, c *Counter) {
			for range 3 {
				c.Go(func() {})
				if err := c.Wait(context.Background()); err != nil {
					t.Fatalf("Wait = %v", err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, &Counter{}) })
	}
}
