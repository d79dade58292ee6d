/**
 * A recipient's queue: critical > high > medium > low, first in first out inside one priority.
 */
import { PRIORITIES, type Priority } from "../protocol/envelope.js";

/** Consumed items a `Fifo` keeps in front of its array before it copies the rest: a copy per shift would cost O(n). */
const COMPACT_AFTER = 1_024;

/**
 * A first-in first-out list whose `shift` is O(1): a head index; the array is emptied in place when the list
 * empties, and compacted once half of a long array is consumed.
 */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The item `shift` would return, left in place. */
  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.head += 1;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= COMPACT_AFTER && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let index = this.head; index < this.items.length; index += 1) yield this.items[index] as T;
  }
}

/** Items by priority; `shift` takes the oldest item of the most urgent non-empty priority. */
export class PriorityQueue<T> {
  /** One lane per priority, most urgent first. */
  private readonly lanes: ReadonlyArray<Fifo<T>> = PRIORITIES.map(() => new Fifo<T>());
  private count = 0;

  /** Items waiting. */
  get size(): number {
    return this.count;
  }

  push(item: T, priority: Priority): void {
    this.lanes[PRIORITIES.indexOf(priority)]?.push(item);
    this.count += 1;
  }

  shift(): T | undefined {
    for (const lane of this.lanes) {
      if (lane.size === 0) continue;
      this.count -= 1;
      return lane.shift();
    }
    return undefined;
  }

  /** The item `shift` would return, left in place. */
  peek(): T | undefined {
    for (const lane of this.lanes) if (lane.size > 0) return lane.peek();
    return undefined;
  }

  /** Every item, in the order `shift` would return them. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const lane of this.lanes) yield* lane;
  }
}
